"""`spark-submit jobs/tokens.py ARGS` runs `tokenmill tokenize ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "tokenize"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
