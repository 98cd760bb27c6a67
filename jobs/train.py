"""`torchrun jobs/train.py ARGS` runs `tokenmill train ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "train"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
