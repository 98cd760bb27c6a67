"""Benchmark: the tokens an epoch trains, under the old document alignment, contiguous packing and
best-fit packing (trainer/packing.py).

    python bench/packing.py [--documents N] [--json PATH]

Document lengths (each with its opening EOT):
- web-like: N lognormal lengths (sigma 1, mean ~1,000 tokens, seed 0; default N = 200,000), 30% of them
  longer than 1,024 tokens and 11% longer than 2,048.
- real, per file: the texts of tests/data/text encoded with gpt2, one document per record of the dolma
  Common Crawl files and one per file otherwise (28 documents, 16 to 338,026 tokens).
- real, per paragraph: the same texts cut at blank lines (7,381 documents, mean 62 tokens).

For T in (1024, 2048), windows of T + 1 tokens over one epoch:
- old alignment (trainer/data.py before issue 12, the anchor): a window starts at the next document's
  start if one begins within T tokens of the cursor, else continues; the tokens between a window's end
  and the next document's start are skipped, the same ones every epoch.
- contiguous: windows tile the concatenated documents, each document cut wherever a window ends.
- best-fit, lookahead 16, 64, 256 and 1024: trainer.packing.coverage, timed (documents/s, one core);
  and, as fine-tuning packs them, without splitting: the documents that fit a window, whole, with the
  padding that costs.

Reported: tokens trained (targets of index >= 1 of their document / all tokens but each document's
EOT), documents whole (inside one window), padding (of all window positions; "unsplit": without
splitting).
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tokenmill.tokenizer import load_encoding
from tokenmill.trainer.packing import coverage

REPO_ROOT = Path(__file__).resolve().parent.parent
TEXTS = REPO_ROOT / "tests" / "data" / "text"
LOOKAHEADS = (16, 64, 256, 1024)


def web_like_lengths(count: int) -> np.ndarray:
    sigma = 1.0
    drawn = np.random.default_rng(0).lognormal(np.log(1000) - sigma**2 / 2, sigma, count)
    return np.maximum(np.round(drawn), 2).astype(np.int64)


def real_texts() -> list[str]:
    """One text per dolma record and per other file of tests/data/text, in name order."""
    texts = []
    for path in sorted(TEXTS.iterdir()):
        if path.name.endswith(".jsonl.gz"):
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                texts += [json.loads(line)["text"] for line in lines]
        else:
            texts.append(path.read_text(encoding="utf-8"))
    return texts


def encoded_lengths(texts: list[str]) -> np.ndarray:
    encoding = load_encoding("gpt2")
    return np.array([1 + len(encoding.encode_ordinary(text)) for text in texts], dtype=np.int64)


def old_alignment_starts(doc_starts: np.ndarray, total: int, seq_len: int) -> np.ndarray:
    """Window starts of the old rule, as its WindowStream walked them (no wrap)."""
    starts, cursor = [], 0
    while True:
        following = int(np.searchsorted(doc_starts, cursor))
        next_doc = int(doc_starts[following]) if following < len(doc_starts) else total
        start = next_doc if next_doc - cursor < seq_len else cursor
        if start + seq_len + 1 > total:
            return np.array(starts, dtype=np.int64)
        starts.append(start)
        cursor = start + seq_len


def stream_windows(lengths: np.ndarray, window_starts: np.ndarray, seq_len: int) -> dict[str, float]:
    """What windows at these offsets of the concatenated documents train: targets are a window's
    tokens 1..T; a document's EOT is no training token."""
    doc_starts = np.cumsum(lengths) - lengths
    doc_ends = doc_starts + lengths
    targets_at_eot = np.searchsorted(doc_starts, window_starts + seq_len, side="right") - np.searchsorted(
        doc_starts, window_starts, side="right"
    )
    trained = len(window_starts) * seq_len - int(targets_at_eot.sum())
    holder = np.searchsorted(window_starts, doc_starts, side="right") - 1  # last window starting at or before
    whole = (holder >= 0) & (doc_ends <= window_starts[np.maximum(holder, 0)] + seq_len + 1)
    return {
        "tokens_trained": trained / int(lengths.sum() - len(lengths)),
        "documents_whole": float(whole.mean()),
        "padding": 0.0,
    }


def measure(lengths: np.ndarray, seq_len: int) -> list[dict[str, Any]]:
    total = int(lengths.sum())
    doc_starts = np.cumsum(lengths) - lengths
    rows = [
        {
            "rule": "old alignment",
            **stream_windows(lengths, old_alignment_starts(doc_starts, total, seq_len), seq_len),
        },
        {
            "rule": "contiguous",
            **stream_windows(lengths, np.arange((total - 1) // seq_len) * seq_len, seq_len),
        },
    ]
    fitting = lengths[lengths <= seq_len + 1]
    for lookahead in LOOKAHEADS:
        started = time.perf_counter()
        report = coverage(lengths, seq_len + 1, lookahead)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "rule": f"best-fit {lookahead}",
                "tokens_trained": report.tokens_trained_fraction,
                "documents_whole": report.documents_whole_fraction,
                "padding": report.padding_fraction,
                "documents_per_s": len(lengths) / seconds,
                "padding_unsplit": coverage(fitting, seq_len + 1, lookahead, split=False).padding_fraction,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=200_000, help="web-like documents to draw")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    texts = real_texts()
    paragraphs = [part for text in texts for part in text.split("\n\n") if part.strip()]
    length_sets = {
        "web-like": web_like_lengths(args.documents),
        "real, per file": encoded_lengths(texts),
        "real, per paragraph": encoded_lengths(paragraphs),
    }
    results = []
    print(
        f"{'lengths':<20} {'T':>5} {'rule':<14} {'trained':>8} {'whole':>7} {'padding':>8} {'docs/s':>9} "
        f"{'unsplit':>8}"
    )
    for name, lengths in length_sets.items():
        for seq_len in (1024, 2048):
            for row in measure(lengths, seq_len):
                row = {"lengths": name, "documents": len(lengths), "mean_length": float(lengths.mean()),
                       "seq_len": seq_len, **row}  # fmt: skip
                results.append(row)
                best_fit = ""
                if "documents_per_s" in row:
                    best_fit = f"{row['documents_per_s']:>9,.0f} {100 * row['padding_unsplit']:>7.2f}%"
                print(
                    f"{name:<20} {seq_len:>5} {row['rule']:<14} {100 * row['tokens_trained']:>7.2f}% "
                    f"{100 * row['documents_whole']:>6.1f}% {100 * row['padding']:>7.4f}% {best_fit}"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
