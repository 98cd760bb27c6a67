"""`torchrun jobs/sft.py ARGS` runs `tokenmill sft ARGS` (see tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "sft"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
