"""Encoded documents on their way to the shards: packed per bucket, spilled by the map task that
encoded them, then one sorted run per bucket in a temporary file that the shard writers read the ranges
they need from.

A `Packed` value holds one bucket's keys, copy numbers, token counts, ids and the tokens back to back.
Each map task appends its values to one spill file and only a `Spilled` reference (file, byte range)
crosses Spark's shuffle, so the tokens never pass through the JVM: Python writes them once and the
bucket's reduce task reads them back with ranged reads. A bucket's run is its documents sorted by
(order, id as UTF-8 bytes, copy), the order Spark's sort gave them, written as

    [8 bytes: little-endian length L][L bytes: Arrow IPC stream of (id, n)][tokens, back to back]

so that a shard writer reads the small index, then only the byte range of the documents its shard
holds, locally or with ranged reads on S3.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO, NamedTuple

import numpy as np
import pyarrow as pa

from tokenmill.pipeline.storage import S3Options, join, open_seekable, write_with

RUN_INDEX = pa.schema([("id", pa.string()), ("n", pa.int64())])
SPILL_INDEX = pa.schema([("order", pa.int64()), ("copy", pa.int32()), ("n", pa.int64()), ("id", pa.string())])
READ_DOCUMENTS = 8192  # documents per batch handed to the shard writer

# Scratch files, in a directory beside the shards. Their names live here, not in the job, so that a
# Spark task that writes them imports only the tokenizer and the storage layer.
RUNS_DIRECTORY = "_runs"
SPILL_FILE = re.compile(r"spill-\d{5}-\d+\.bin")
SCRATCH_FILE = re.compile(rf"run-\d{{5}}\.bin|{SPILL_FILE.pattern}")


def run_uri(directory: str, bucket: int) -> str:
    return join(directory, RUNS_DIRECTORY, f"run-{bucket:05d}.bin")


def spill_uri(directory: str, partition: int, attempt: int) -> str:
    """One file per map task attempt: a retried or speculative attempt never overwrites the file that
    another attempt's references point into."""
    return join(directory, RUNS_DIRECTORY, f"spill-{partition:05d}-{attempt}.bin")


class Packed(NamedTuple):
    """Documents of one bucket, in any order, as they cross the shuffle."""

    orders: np.ndarray  # int64 shuffle keys (tokenizer.order)
    copies: np.ndarray  # int32 copy numbers, 0 for the document itself
    counts: np.ndarray  # int64 tokens per document, its EOT included
    ids: list[str]
    tokens: np.ndarray  # every document's tokens back to back, in the shard dtype


class Spilled(NamedTuple):
    """Where a map task spilled one Packed value: a byte range of its spill file."""

    uri: str
    offset: int
    length: int


def _ipc_bytes(batch: pa.RecordBatch) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, batch.schema) as stream:
        stream.write_batch(batch)
    return sink.getvalue()


def write_packed(handle: BinaryIO, packed: Packed) -> int:
    """Append `packed` as [8 bytes: length L][L bytes: Arrow IPC of (order, copy, n, id)][tokens];
    returns the bytes written."""
    values = (packed.orders, packed.copies, packed.counts, packed.ids)
    columns = [pa.array(value, field.type) for value, field in zip(values, SPILL_INDEX, strict=True)]
    index = _ipc_bytes(pa.record_batch(columns, schema=SPILL_INDEX))
    handle.write(len(index).to_bytes(8, "little"))
    handle.write(index)
    handle.write(memoryview(packed.tokens).cast("B"))
    return 8 + len(index) + packed.tokens.nbytes


def read_packed(data: bytes, dtype: np.dtype) -> Packed:
    """The Packed value `write_packed` wrote as `data`."""
    length = int.from_bytes(data[:8], "little")
    index = pa.ipc.open_stream(data[8 : 8 + length]).read_next_batch()
    return Packed(
        orders=index.column("order").to_numpy(),
        copies=index.column("copy").to_numpy(),
        counts=index.column("n").to_numpy(),
        ids=index.column("id").to_pylist(),
        tokens=np.frombuffer(data, dtype=dtype, offset=8 + length),
    )


def read_spilled(refs: list[Spilled], s3: S3Options, dtype: np.dtype) -> Iterator[Packed]:
    """The Packed values behind `refs`, each spill file opened once and read in file order."""
    by_file: dict[str, list[Spilled]] = {}
    for ref in refs:
        by_file.setdefault(ref.uri, []).append(ref)
    for uri, in_file in by_file.items():
        with open_seekable(uri, s3) as handle:
            for ref in sorted(in_file, key=lambda ref: ref.offset):
                handle.seek(ref.offset)
                yield read_packed(handle.read(ref.length), dtype)


class Run(NamedTuple):
    """A run file and where its tokens lie in the stream."""

    uri: str
    base: int  # stream position of the run's first token
    tokens: int


class RunSummary(NamedTuple):
    """What a bucket's run holds, for the layout on the driver."""

    documents: int
    tokens: int
    originals: int  # copy 0: the documents themselves
    tokens_added: int  # the tokens of copies k > 0
    repeats: int  # rows whose (id, copy) equals the row before: an id the input holds twice


def split_by_bucket(
    bucket_of_row: np.ndarray,
    orders: np.ndarray,
    copies: np.ndarray,
    ids: list[str],
    counts: np.ndarray,
    tokens: np.ndarray,
) -> Iterator[tuple[int, Packed]]:
    """(bucket, Packed) for each bucket present, from rows already grouped by bucket (ascending)."""
    present, first_rows = np.unique(bucket_of_row, return_index=True)
    row_bounds = [*first_rows.tolist(), len(bucket_of_row)]
    token_bounds = np.concatenate([[0], np.cumsum(counts)])
    for bucket, start, end in zip(present.tolist(), row_bounds, row_bounds[1:], strict=False):
        rows = slice(start, end)
        tokens_part = tokens[token_bounds[start] : token_bounds[end]]
        yield bucket, Packed(orders[rows], copies[rows], counts[rows], ids[start:end], tokens_part)


def _sorted_rows(orders: np.ndarray, ids: list[str], copies: np.ndarray) -> np.ndarray:
    """Row numbers in (order, id as UTF-8 bytes, copy) order. Keys tie only for a repeated id (or an
    unlikely hash collision), so ties are ordered in Python and everything else by numpy."""
    rows = np.argsort(orders, kind="stable")
    ordered = orders[rows]
    tied = np.flatnonzero(ordered[1:] == ordered[:-1])
    start = 0
    while start < len(tied):
        end = start
        while end + 1 < len(tied) and tied[end + 1] == tied[end] + 1:
            end += 1
        group = slice(int(tied[start]), int(tied[end]) + 2)
        rows[group] = sorted(rows[group], key=lambda row: (ids[row].encode("utf-8"), int(copies[row])))
        start = end + 1
    return rows


def write_run(parts: Iterable[Packed], uri: str, s3: S3Options) -> RunSummary:
    """Sort a bucket's documents and write them as one run file at `uri`."""
    parts = list(parts)
    orders = np.concatenate([part.orders for part in parts])
    copies = np.concatenate([part.copies for part in parts])
    counts = np.concatenate([part.counts for part in parts])
    ids = [doc_id for part in parts for doc_id in part.ids]
    tokens = np.concatenate([part.tokens for part in parts])
    rows = _sorted_rows(orders, ids, copies)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_ids = [ids[row] for row in rows.tolist()]
    sorted_copies = copies[rows]
    repeats = sum(
        1
        for row in np.flatnonzero(orders[rows][1:] == orders[rows][:-1]).tolist()
        if sorted_ids[row] == sorted_ids[row + 1] and sorted_copies[row] == sorted_copies[row + 1]
    )
    index_bytes = _ipc_bytes(
        pa.record_batch([pa.array(sorted_ids, pa.string()), pa.array(counts[rows])], RUN_INDEX)
    )

    def write(handle: BinaryIO) -> None:
        handle.write(len(index_bytes).to_bytes(8, "little"))
        handle.write(index_bytes)
        view = memoryview(tokens).cast("B")
        itemsize = tokens.dtype.itemsize
        for start, count in zip(starts[rows].tolist(), counts[rows].tolist(), strict=True):
            handle.write(view[start * itemsize : (start + count) * itemsize])

    write_with(uri, write, s3, durable=False)  # scratch: a crashed job removes its runs and recomputes them
    added = sorted_copies > 0
    return RunSummary(
        documents=len(ids),
        tokens=int(counts.sum()),
        originals=int((~added).sum()),
        tokens_added=int(counts[rows][added].sum()),
        repeats=repeats,
    )


def _read_index(handle: BinaryIO) -> tuple[pa.RecordBatch, int]:
    """The run's (id, n) index and the byte position where its tokens begin."""
    length = int.from_bytes(handle.read(8), "little")
    index = pa.ipc.open_stream(handle.read(length)).read_all().combine_chunks()
    batch = index.to_batches()[0] if index.num_rows else RUN_INDEX.empty_table().to_batches(1)[0]
    return batch, 8 + length


def run_counts(uri: str, s3: S3Options) -> np.ndarray:
    """Tokens per document of a run, in its order."""
    with open_seekable(uri, s3) as handle:
        index, _ = _read_index(handle)
    return index.column("n").to_numpy()


def read_range(
    uri: str, s3: S3Options, base: int, low: int, high: int, itemsize: int
) -> Iterator[pa.RecordBatch]:
    """(id, n, tokens, start) batches of the run's documents that overlap the stream positions [low,
    high), where `base` is the stream position of the run's first token; documents come whole."""
    with open_seekable(uri, s3) as handle:
        index, tokens_at = _read_index(handle)
        counts = index.column("n").to_numpy()
        ends = base + np.cumsum(counts)
        starts = ends - counts
        first = int(np.searchsorted(ends, low, side="right"))
        last = int(np.searchsorted(starts, high, side="left"))
        for begin in range(first, last, READ_DOCUMENTS):
            end = min(begin + READ_DOCUMENTS, last)
            handle.seek(tokens_at + int(starts[begin] - base) * itemsize)
            data = handle.read(int(ends[end - 1] - starts[begin]) * itemsize)
            offsets = np.concatenate([[0], np.cumsum(counts[begin:end])]) * itemsize
            tokens = pa.Array.from_buffers(
                pa.binary(), end - begin, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
            )
            yield pa.record_batch(
                [
                    index.column("id")[begin:end],
                    pa.array(counts[begin:end]),
                    tokens,
                    pa.array(starts[begin:end]),
                ],
                names=["id", "n", "tokens", "start"],
            )
