"""`python jobs/sample.py ARGS` runs `tokenmill sample ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "sample"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
