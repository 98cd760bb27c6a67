"""Where every document's tokens go: the validation shard, then fixed-size training shards.

The documents arrive in their shuffled order with their token counts. Their concatenation is one
stream; `start` is a document's position in it. Validation (shard 0) takes whole documents until it
holds at least the asked-for tokens, so no document is split between validation and training. The
rest of the stream is cut every `shard_tokens` tokens into shards 1, 2, ...: a document may continue
from one training shard into the next, as in llm.c's and modded-nanogpt's shards. Each part of a
document inside one shard is a *piece*; piece 0 starts with the document's EOT token.

Everything here works on Arrow batches and plain numbers, so the shard tasks and the tests share it.
"""

from __future__ import annotations

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


def pieces(batch: pa.RecordBatch, layout: Layout, itemsize: int) -> pa.RecordBatch:
    """Cut each document (columns id, start, n, tokens) into the pieces that fall in each shard.

    Computed with numpy over the whole batch: a piece's tokens are a range of its document's bytes, and
    the pieces of consecutive documents are consecutive ranges of the batch's token bytes, so the
    pieces share the batch's data buffer (only new offsets are built)."""
    if not batch.num_rows:
        return pa.RecordBatch.from_pylist([], schema=PIECE_SCHEMA)
    starts = batch.column("start").to_numpy(zero_copy_only=False).astype(np.int64)
    counts = batch.column("n").to_numpy(zero_copy_only=False).astype(np.int64)
    in_val = starts < layout.val_tokens
    position = starts - layout.val_tokens  # in the train stream (negative for validation documents)
    size = layout.shard_tokens
    first = np.where(in_val, 0, position // size)
    per_doc = np.where(in_val, 0, (position + counts - 1) // size) - first + 1
    doc = np.repeat(np.arange(len(counts)), per_doc)
    piece = np.arange(len(doc)) - np.repeat(np.cumsum(per_doc) - per_doc, per_doc)
    train_shard = first[doc] + piece  # 0-based among training shards
    val_piece = in_val[doc]
    begin = np.where(val_piece | (piece == 0), 0, train_shard * size - position[doc])
    end = np.where(val_piece, counts[doc], np.minimum(counts[doc], (train_shard + 1) * size - position[doc]))
    offset = np.where(val_piece, starts[doc], np.where(piece == 0, position[doc] - train_shard * size, 0))
    tokens = batch.column("tokens")
    _, value_offsets, data = tokens.buffers()
    doc_bytes = np.frombuffer(value_offsets, dtype=np.int32)[tokens.offset : tokens.offset + len(tokens)]
    piece_starts = doc_bytes[doc].astype(np.int64) + begin * itemsize
    bounds = np.concatenate([piece_starts, doc_bytes[doc[-1:]] + end[-1:] * itemsize])
    piece_tokens = pa.Array.from_buffers(
        pa.binary(), len(doc), [None, pa.py_buffer(bounds.astype(np.int32)), data]
    )
    return pa.record_batch(
        [
            pa.array(np.where(val_piece, 0, train_shard + 1).astype(np.int32)),
            pa.array(offset),
            pa.array(piece.astype(np.int32)),
            batch.column("id").take(pa.array(doc)),
            piece_tokens,
        ],
        schema=PIECE_SCHEMA,
    )
