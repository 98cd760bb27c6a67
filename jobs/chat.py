"""`python jobs/chat.py ARGS` runs `tokenmill chat ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "chat"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
