"""tokenmill token shards -> training and validation batches.

`open_token_set` reads ROOT/tokens/<tokenizer>/manifest.json and checks it against the files: the
dtype, EOT id and vocabulary come from the manifest and every shard's magic must agree with its dtype,
so nothing is guessed from file sizes or token values.

The train shards, concatenated in order, are one token stream (a document may run from one shard into
the next). `WindowStream` walks it in windows of seq_len + 1 tokens (inputs and targets shifted by
one), each window starting where the previous one's inputs ended. With document alignment a window
starts at the next document's EOT when one begins within seq_len tokens; otherwise (inside a document
longer than a window) it continues that document. So every window either opens with a document start
or lies inside one long document, at the cost of the few tokens between a window's end and the next
document. The stream wraps to its start after the last full window (the next epoch).

Ranks: all of them walk the same sequence of windows and rank r keeps windows r, r + W, r + 2W, ...
(W = world size), so the ranks' streams are disjoint and their union, step by step, is the one-process
stream: the same global batch gives the same training on any number of processes. At a step boundary
every rank holds the same cursor (shard, offset, epoch), the exact data position a checkpoint stores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tokenmill.tokenizer.shards import (
    HEADER_BYTES,
    ShardFormat,
    decode_header,
    format_for_dtype,
    read_index,
    read_shard,
)

MANIFEST_FORMAT = "tokenmill-tokens/1"


@dataclass(frozen=True)
class TokenSet:
    root: Path
    manifest: dict[str, Any]
    shard_format: ShardFormat
    vocab_size: int
    eot_id: int
    train: tuple[Path, ...]
    val: Path


def _shard_path(root: Path, entry: dict[str, Any], key: str) -> Path:
    path = root / entry[key]
    if not path.is_file():
        raise FileNotFoundError(f"{root / 'manifest.json'} lists {entry[key]}, which is missing")
    return path


def open_token_set(root: str | Path) -> TokenSet:
    """The manifest of a `tokenmill tokenize` output, checked against its shards (headers, sizes)."""
    root = Path(root)
    manifest_path = root / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{manifest_path} not found: --data must be ROOT/tokens/<tokenizer>")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{manifest_path}: format {manifest.get('format')!r} is not {MANIFEST_FORMAT!r}")
    shard_format = format_for_dtype(manifest["dtype"])
    if manifest.get("magic", shard_format.magic) != shard_format.magic:
        raise ValueError(
            f"{manifest_path}: dtype {manifest['dtype']} has magic {shard_format.magic}, "
            f"not {manifest['magic']}"
        )
    vocab_size, eot_id = int(manifest["vocab_size"]), int(manifest["eot_id"])
    if not 0 <= eot_id < vocab_size:
        raise ValueError(f"{manifest_path}: eot_id {eot_id} is outside the vocabulary of {vocab_size}")
    if vocab_size > 1 << 16 and shard_format.dtype.itemsize == 2:
        raise ValueError(f"{manifest_path}: a vocabulary of {vocab_size} does not fit uint16 tokens")
    shards = sorted(manifest["shards"], key=lambda entry: entry["index"])
    for entry in shards:
        path = _shard_path(root, entry, "bin")
        _shard_path(root, entry, "idx")
        with open(path, "rb") as handle:
            found, count = decode_header(handle.read(HEADER_BYTES), str(path))
        if found != shard_format:
            raise ValueError(
                f"{path}: magic {found.magic} ({found.dtype.name}) disagrees with the manifest's "
                f"dtype {manifest['dtype']}"
            )
        if count != entry["tokens"]:
            raise ValueError(f"{path}: {count} tokens in the header, {entry['tokens']} in the manifest")
    val = [root / entry["bin"] for entry in shards if entry["split"] == "val"]
    train = tuple(root / entry["bin"] for entry in shards if entry["split"] == "train")
    if len(val) != 1 or not train:
        raise ValueError(f"{manifest_path}: needs one val shard and at least one train shard")
    return TokenSet(root, manifest, shard_format, vocab_size, eot_id, train, val[0])


class WindowStream:
    """Windows of `seq_len + 1` tokens over shards read as one stream (see the module docstring)."""

    def __init__(self, shards: tuple[Path, ...], seq_len: int, align: bool, wrap: bool) -> None:
        self.tokens = [read_shard(path) for path in shards]
        self.starts = np.cumsum([0] + [len(tokens) for tokens in self.tokens])  # of each shard
        self.doc_starts = np.concatenate(
            [
                read_index(path).astype(np.int64) + start
                for path, start in zip(shards, self.starts[:-1], strict=True)
            ]
        )
        self.seq_len, self.align, self.wrap = seq_len, align, wrap
        self.total = int(self.starts[-1])
        if self.total < seq_len + 1:
            raise ValueError(f"{self.total} tokens cannot fill one window of {seq_len + 1}")
        self.cursor, self.epoch = 0, 0

    def _window_start(self) -> int | None:
        start = self.cursor
        if self.align:
            following = np.searchsorted(self.doc_starts, start)
            next_doc = int(self.doc_starts[following]) if following < len(self.doc_starts) else self.total
            if next_doc - start < self.seq_len:
                start = next_doc
        return start if start + self.seq_len + 1 <= self.total else None

    def _advance(self) -> int:
        """Start of the next window; moves the cursor past its inputs."""
        start = self._window_start()
        if start is None:
            if not self.wrap:
                raise StopIteration
            self.cursor, self.epoch = 0, self.epoch + 1
            start = self._window_start()
        self.cursor = start + self.seq_len
        return start

    def skip(self) -> None:
        self._advance()

    def next_window(self) -> np.ndarray:
        start = self._advance()
        end = start + self.seq_len + 1
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        last = int(np.searchsorted(self.starts, end, side="left")) - 1
        parts = [
            self.tokens[shard][max(start - self.starts[shard], 0) : end - self.starts[shard]]
            for shard in range(first, last + 1)
        ]
        return np.concatenate(parts).astype(np.int64)

    def state(self) -> dict[str, int]:
        shard = min(int(np.searchsorted(self.starts, self.cursor, side="right")) - 1, len(self.tokens) - 1)
        return {"shard": shard, "offset": self.cursor - int(self.starts[shard]), "epoch": self.epoch}

    def load_state(self, state: dict[str, int]) -> None:
        if not 0 <= state["shard"] < len(self.tokens) or state["offset"] > len(self.tokens[state["shard"]]):
            raise ValueError(f"data position {state} lies outside these {len(self.tokens)} shards")
        self.cursor = int(self.starts[state["shard"]]) + state["offset"]
        self.epoch = state["epoch"]

    def rewind(self) -> None:
        self.cursor, self.epoch = 0, 0


class RankBatches:
    """Micro-batches (inputs, targets) of one rank: its every world_size-th window of the stream."""

    def __init__(self, stream: WindowStream, micro_batch: int, rank: int, world_size: int) -> None:
        self.stream, self.micro_batch, self.rank, self.world_size = stream, micro_batch, rank, world_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        windows = []
        for _ in range(self.micro_batch):
            for rank in range(self.world_size):
                if rank == self.rank:
                    windows.append(self.stream.next_window())
                else:
                    self.stream.skip()
        batch = torch.from_numpy(np.stack(windows))
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()
