"""`python jobs/crawls.py ARGS` runs `tokenmill crawls ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "crawls"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
