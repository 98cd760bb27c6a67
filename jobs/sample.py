"""Sample: text from a trained checkpoint, with a KV cache; greedy or temperature / top-k / top-p.

    tokenmill sample --checkpoint DIR --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K]
                     [--top-p P] [--seed S] [--device cpu|cuda]

DIR is a `tokenmill train` output directory: the model comes from its checkpoint, the tokenizer from
the manifest saved beside it. The prompt is encoded after an EOT token, as every training document
begins; generation stops at the next EOT (the end of the document) or after N tokens.
--temperature 0 is greedy decoding.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="a `tokenmill train` --out")
    parser.add_argument("--prompt", default="", metavar="TEXT", help="text to continue (default: none)")
    parser.add_argument("--max-new-tokens", type=int, default=200, metavar="N")
    parser.add_argument("--temperature", type=float, default=0.8, metavar="T", help="0: greedy")
    parser.add_argument("--top-k", type=int, default=None, metavar="K")
    parser.add_argument("--top-p", type=float, default=None, metavar="P", help="nucleus mass, in (0, 1]")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda if present")


def run(args: argparse.Namespace) -> int:
    import torch

    from tokenmill.tokenizer.encodings import load_encoding
    from tokenmill.trainer.sample import generate, load_model

    if args.temperature < 0 or (args.top_p is not None and not 0 < args.top_p <= 1):
        raise SystemExit("sample: --temperature must be >= 0 and --top-p in (0, 1]")
    if args.top_k is not None and args.top_k < 1:
        raise SystemExit("sample: --top-k must be >= 1")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if not (Path(args.checkpoint) / "manifest.json").is_file():
        raise SystemExit(f"sample: {args.checkpoint} is not a `tokenmill train` output directory")
    manifest = json.loads((Path(args.checkpoint) / "manifest.json").read_text())
    encoding = load_encoding(manifest["tokenizer"]["source"])
    model, _ = load_model(args.checkpoint, device)
    eot = manifest["eot_id"]
    prompt = torch.tensor([[eot, *encoding.encode_ordinary(args.prompt)]], device=device)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    tokens = generate(
        model,
        prompt,
        args.max_new_tokens,
        args.temperature,
        args.top_k,
        args.top_p,
        generator,
        vocab_limit=manifest["vocab_size"],
        stop_token=eot,
    )
    new = tokens[0, prompt.size(1) :].tolist()
    if new and new[-1] == eot:
        new.pop()
    print(args.prompt + encoding.decode(new))
    return 0


if __name__ == "__main__":  # python jobs/sample.py ...: the same parser as `tokenmill sample`
    from tokenmill.jobs.cli import main

    sys.exit(main(["sample", *sys.argv[1:]]))
