"""`spark-submit jobs/run.py ARGS` runs `tokenmill run ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "run"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
