"""`spark-submit jobs/selection.py ARGS` runs `tokenmill select ARGS` (see tokenmill.jobs.stages); the
file is not select.py, which would shadow the standard library's select module for the whole job."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "select"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
