"""`spark-submit jobs/ingest.py ARGS` runs `tokenmill ingest ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "ingest"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
