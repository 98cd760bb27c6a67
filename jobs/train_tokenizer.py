"""`spark-submit jobs/train_tokenizer.py ARGS` runs `tokenmill train-tokenizer ARGS`."""

import sys

from tokenmill.jobs.cli import main

COMMAND = "train-tokenizer"

if __name__ == "__main__":
    sys.exit(main([COMMAND, *sys.argv[1:]]))
