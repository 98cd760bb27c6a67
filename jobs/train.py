"""Train: a GPT on the token shards of `tokenmill tokenize`, on one device or many.

    tokenmill train --data ROOT/tokens/<tokenizer> --config tiny|gpt2-124m|FILE [--out DIR] [--resume]
                    [--max-steps N] [--device cpu|cuda]
    torchrun --nproc_per_node=G jobs/train.py --data ... (the same options; any torchrun layout)

FILE is JSON: TrainConfig fields (trainer/config.py) over a "base" config. --max-steps N stops after
step N with a checkpoint, the learning-rate schedule still spanning the config's max_steps, so that
--resume carries on exactly where the run would have been. DIR (default out/train) receives
checkpoint.pt, config.json, manifest.json and metrics.jsonl (one JSON object per logged step).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="ROOT/tokens/NAME", help="a token set's directory")
    parser.add_argument("--config", default="tiny", metavar="tiny|gpt2-124m|FILE", help="training config")
    parser.add_argument("--out", default="out/train", metavar="DIR", help="checkpoints and metrics")
    parser.add_argument(
        "--resume", action="store_true", help="continue from DIR's checkpoint if there is one"
    )
    parser.add_argument("--max-steps", type=int, default=None, metavar="N", help="stop after step N")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if present")


def run(args: argparse.Namespace) -> int:
    from tokenmill.trainer.config import load_config
    from tokenmill.trainer.train import train

    if not (Path(args.data) / "manifest.json").is_file():
        raise SystemExit(f"train: {args.data} has no manifest.json; --data is ROOT/tokens/<tokenizer>")
    train(args.data, load_config(args.config), args.out, args.resume, args.max_steps, args.device)
    return 0


if __name__ == "__main__":  # torchrun jobs/train.py ...: the same parser as `tokenmill train`
    from tokenmill.jobs.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))
