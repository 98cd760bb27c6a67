"""`spark-submit jobs/scrub.py ARGS` runs `tokenmill scrub ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "scrub"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
