"""`python jobs/report.py ARGS` runs `tokenmill report ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "report"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
