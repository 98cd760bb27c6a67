"""tokenmill token shards -> training and validation batches.

`open_token_set` reads ROOT/tokens/<tokenizer>/manifest.json and checks it against the files: the
dtype, EOT id and vocabulary come from the manifest and every shard's magic must agree with its dtype,
so nothing is guessed from file sizes or token values.

Documents: `ShardDocuments` reads shards, concatenated in order, as one list of documents (the `.idx`
files give their starts, and a document may run from one shard into the next); `MaskedDocuments` holds
documents in memory with a mask of the tokens to train on (fine-tuning conversations). Both give
`lengths`, `tokens(doc, start, end)` and `targets_mask(doc, start, end)`.

`PackedWindows` fills windows of seq_len + 1 tokens (inputs and targets shifted by one) by best-fit
packing (trainer/packing.py): whole documents where they fit, and with split=True a document that fits
nowhere fills the window's end and its remainder opens the next window. Every token of index >= 1 of
every document is then a target exactly once per epoch, and every document still begins with its EOT.
The rule this replaces aligned windows to document starts and skipped the rest of any document that
crossed a window's end, the same tokens every epoch: 19% of the training tokens of web-like documents
(lognormal, mean 1,000 tokens) were never trained at T = 1,024 and 20% at T = 2,048, and 5-6% of the
repo's real texts cut into paragraphs (bench/packing.py). Targets are -1 (no loss) on padding and
wherever a document's mask is False. A non-wrapping stream (validation) ends with a partial, padded
window.

Ranks: all of them walk the same sequence of windows and rank r keeps windows r, r + W, r + 2W, ...
(W = world size), so the ranks' streams are disjoint and their union, step by step, is the one-process
stream: the same global batch gives the same training on any number of processes. At a step boundary
every rank holds the same packer state (epoch, next document, buffer, carry), the exact data position a
checkpoint stores.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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
from tokenmill.trainer.packing import BestFitPacker

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


class Documents(Protocol):
    """What packing reads: each document's length, and any slice of its tokens and target mask."""

    lengths: np.ndarray

    def tokens(self, doc: int, start: int, end: int) -> np.ndarray: ...

    def targets_mask(self, doc: int, start: int, end: int) -> np.ndarray: ...


class ShardDocuments:
    """The documents of token shards read as one stream, memory-mapped; every token is a target."""

    def __init__(self, shards: Sequence[Path]) -> None:
        self.shards = [read_shard(path) for path in shards]
        self.shard_starts = np.cumsum([0] + [len(tokens) for tokens in self.shards])
        self.starts = np.concatenate(
            [
                read_index(path).astype(np.int64) + offset
                for path, offset in zip(shards, self.shard_starts[:-1], strict=True)
            ]
        )
        if len(self.starts) == 0 or self.starts[0] != 0:
            raise ValueError(f"{shards[0]}: the token stream does not open with a document's start")
        self.lengths = np.diff(self.starts, append=self.shard_starts[-1])

    def tokens(self, doc: int, start: int, end: int) -> np.ndarray:
        begin, stop = int(self.starts[doc]) + start, int(self.starts[doc]) + end  # in the stream
        first = int(np.searchsorted(self.shard_starts, begin, side="right")) - 1
        last = int(np.searchsorted(self.shard_starts, stop, side="left")) - 1
        return np.concatenate(
            [
                self.shards[shard][max(begin - self.shard_starts[shard], 0) : stop - self.shard_starts[shard]]
                for shard in range(first, last + 1)
            ]
        ).astype(np.int64)

    def targets_mask(self, doc: int, start: int, end: int) -> np.ndarray:
        return np.ones(end - start, dtype=bool)


class MaskedDocuments:
    """Documents in memory, each a token array and a bool array: True where the token is a target."""

    def __init__(self, documents: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for index, (tokens, mask) in enumerate(documents):
            if len(tokens) != len(mask):
                raise ValueError(f"document {index} has {len(tokens)} tokens but a mask of {len(mask)}")
        self.documents = documents
        self.lengths = np.array([len(tokens) for tokens, _ in documents], dtype=np.int64)

    def tokens(self, doc: int, start: int, end: int) -> np.ndarray:
        return np.asarray(self.documents[doc][0][start:end], dtype=np.int64)

    def targets_mask(self, doc: int, start: int, end: int) -> np.ndarray:
        return np.asarray(self.documents[doc][1][start:end], dtype=bool)


class PackedWindows:
    """(inputs, targets) windows of best-fit packed documents (see the module docstring)."""

    def __init__(
        self, documents: Documents, seq_len: int, *, split: bool, wrap: bool, lookahead: int
    ) -> None:
        self.documents, self.seq_len = documents, seq_len
        self.packer = BestFitPacker(
            documents.lengths, seq_len + 1, split=split, wrap=wrap, lookahead=lookahead
        )
        self.first_state = self.packer.state()

    def next_window(self) -> tuple[np.ndarray, np.ndarray]:
        """Two int64 arrays of seq_len; targets are -1 on padding and on tokens masked out."""
        window = np.zeros(self.seq_len + 1, dtype=np.int64)  # padding: token 0, never a target
        trained = np.zeros(self.seq_len + 1, dtype=bool)
        position = 0
        for doc, start, end in self.packer.next_window():
            window[position : position + end - start] = self.documents.tokens(doc, start, end)
            trained[position : position + end - start] = self.documents.targets_mask(doc, start, end)
            position += end - start
        return window[:-1], np.where(trained[1:], window[1:], -1)

    def skip(self) -> None:
        self.packer.next_window()

    def state(self) -> dict[str, Any]:
        return self.packer.state()

    def load_state(self, state: dict[str, Any]) -> None:
        self.packer.load_state(state)

    def rewind(self) -> None:
        """Back to the first window of epoch 0."""
        self.packer.load_state(self.first_state)


class RankBatches:
    """Micro-batches (inputs, targets) of one rank: its every world_size-th window of the stream."""

    def __init__(self, windows: PackedWindows, micro_batch: int, rank: int, world_size: int) -> None:
        self.windows, self.micro_batch, self.rank, self.world_size = windows, micro_batch, rank, world_size

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Two int64 tensors of (micro_batch, seq_len)."""
        inputs, targets = [], []
        for _ in range(self.micro_batch):
            for rank in range(self.world_size):
                if rank == self.rank:
                    window_inputs, window_targets = self.windows.next_window()
                    inputs.append(window_inputs)
                    targets.append(window_targets)
                else:
                    self.windows.skip()
        return torch.from_numpy(np.stack(inputs)), torch.from_numpy(np.stack(targets))
