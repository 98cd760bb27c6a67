"""Where every document's tokens go: the validation shard, then fixed-size training shards.

The documents arrive in their shuffled order with their token counts. Their concatenation is one
stream; `start` is a document's position in it. Validation (shard 0) takes whole documents until it
holds at least the asked-for tokens, so no document is split between validation and training. The
rest of the stream is cut every `shard_tokens` tokens into shards 1, 2, ...: a document may continue
from one training shard into the next, as in llm.c's and modded-nanogpt's shards. Each part of a
document inside one shard is a *piece*; piece 0 starts with the document's EOT token.

Everything here works on Arrow batches and plain numbers, so the Spark job and the tests share it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

PIECE_SCHEMA = pa.schema(
    [
        ("shard", pa.int32()),
        ("offset", pa.int64()),  # first token's position within the shard
        ("piece", pa.int32()),  # 0: the document starts here; k > 0: its k-th continuation
        ("id", pa.string()),
        ("tokens", pa.binary()),  # little-endian tokens in the shard's dtype
    ]
)


@dataclass(frozen=True)
class Layout:
    val_tokens: int  # tokens in shard 0 (whole documents)
    train_tokens: int
    shard_tokens: int

    @property
    def train_shards(self) -> int:
        return -(-self.train_tokens // self.shard_tokens)

    def shard_sizes(self) -> list[int]:
        """Token count of shard 0 (validation), 1, 2, ..."""
        full, rest = divmod(self.train_tokens, self.shard_tokens)
        return [self.val_tokens] + [self.shard_tokens] * full + ([rest] if rest else [])


def running_starts(batches: Iterator[pa.RecordBatch], base: int) -> Iterator[pa.RecordBatch]:
    """Add `start` to batches that carry `n` (token counts) in stream order, from `base` on."""
    position = base
    for batch in batches:
        counts = batch.column("n").to_numpy(zero_copy_only=False).astype(np.int64)
        ends = position + np.cumsum(counts)
        starts = ends - counts
        position = int(ends[-1]) if len(counts) else position
        yield batch.append_column("start", pa.array(starts, pa.int64()))


def pieces(batch: pa.RecordBatch, layout: Layout, itemsize: int) -> pa.RecordBatch:
    """Cut each document (columns id, start, n, tokens) into the pieces that fall in each shard."""
    rows: dict[str, list] = {name: [] for name in PIECE_SCHEMA.names}
    columns = (batch.column(name).to_pylist() for name in ("id", "start", "n", "tokens"))
    for doc_id, start, count, tokens in zip(*columns, strict=True):
        if start < layout.val_tokens:
            cuts = [(0, start, 0, count)]
        else:
            cuts = _train_cuts(start - layout.val_tokens, count, layout.shard_tokens)
        for piece, (shard, offset, begin, end) in enumerate(cuts):
            rows["shard"].append(shard)
            rows["offset"].append(offset)
            rows["piece"].append(piece)
            rows["id"].append(doc_id)
            rows["tokens"].append(tokens[begin * itemsize : end * itemsize])
    return pa.RecordBatch.from_pydict(rows, schema=PIECE_SCHEMA)


def _train_cuts(position: int, count: int, shard_tokens: int) -> list[tuple[int, int, int, int]]:
    """(shard, offset in shard, first token, end token) for a document at `position` of the train stream."""
    cuts = []
    done = 0
    while done < count:
        shard, offset = divmod(position + done, shard_tokens)
        take = min(count - done, shard_tokens - offset)
        cuts.append((shard + 1, offset, done, done + take))
        done += take
    return cuts
