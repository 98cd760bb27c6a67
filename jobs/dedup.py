"""`spark-submit jobs/dedup.py ARGS` runs `tokenmill dedup ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "dedup"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
