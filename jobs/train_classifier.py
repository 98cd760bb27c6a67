"""`python jobs/train_classifier.py ARGS` runs `tokenmill train-classifier ARGS` (tokenmill.jobs.stages)."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "train-classifier"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
