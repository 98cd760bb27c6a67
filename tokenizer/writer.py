"""Writing one shard's three files from its pieces: `.bin` (llm.c format), `.idx`, `.parquet`.

The pieces arrive in offset order, in batches whose sizes depend on how the job read them; the Parquet
file is cut into row groups of a fixed number of pieces, so its bytes do not depend on those sizes.
Each file is staged (`StagedFile`: built beside its target under a hidden name and renamed, or built in a
local temporary directory and uploaded to S3), so a killed task leaves no partial shard under a final
name and a local shard is written once, not built and then copied; the manifest, written by the driver
after every shard, is the run's commit.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill.pipeline.storage import S3Options, StagedFile, join
from tokenmill.tokenizer.shards import ShardFormat, encode_header

ROW_GROUP_PIECES = 8192
# Token ids are near-uniform over tens of thousands of values: a dictionary makes them no smaller
# (~3% larger) and costs ~8% of the write, so only the ids get one.
DICTIONARY_COLUMNS = ["id"]


def shard_name(index: int) -> str:
    """Shard 0 is validation, as in llm.c's and modded-nanogpt's data directories."""
    return f"{'val' if index == 0 else 'train'}_{index:06d}"


def parquet_schema(shard_format: ShardFormat) -> pa.Schema:
    value = pa.uint16() if shard_format.dtype.itemsize == 2 else pa.uint32()
    return pa.schema(
        [("id", pa.string()), ("tokens", pa.list_(value)), ("offset", pa.int64()), ("piece", pa.int32())]
    )


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


SUFFIXES = ("bin", "idx", "parquet")


class ShardWriter:
    """Builds shard `index`'s three staged files from its pieces; `commit` publishes them."""

    def __init__(self, directory: str, index: int, shard_format: ShardFormat, s3: S3Options):
        self.index, self.format = index, shard_format
        self.name = shard_name(index)
        self.tokens = 0
        self.starts: list[int] = []
        self._staged = {
            suffix: StagedFile(join(directory, f"{self.name}.{suffix}"), s3) for suffix in SUFFIXES
        }
        self._bin = open(self._staged["bin"].path, "xb")  # noqa: SIM115 (closed on commit or abort)
        self._bin.write(encode_header(shard_format, 0))  # the count is filled in on commit
        self._parquet = pq.ParquetWriter(
            self._staged["parquet"].path,
            parquet_schema(shard_format),
            compression="zstd",
            use_dictionary=DICTIONARY_COLUMNS,
        )
        self._pending: list[pa.Table] = []  # pieces not yet written: less than a row group

    def add(self, pieces: pa.RecordBatch) -> None:
        """Append pieces (columns offset, piece, id, tokens) that continue this shard exactly."""
        offsets = pieces.column("offset").to_numpy()
        tokens = pieces.column("tokens")  # a binary array's values lie back to back in its data buffer
        _, value_offsets, data = tokens.buffers()
        bounds = np.frombuffer(value_offsets, dtype=np.int32)[tokens.offset : tokens.offset + len(tokens) + 1]
        lengths = np.diff(bounds).astype(np.int64) // self.format.dtype.itemsize
        expected = self.tokens + np.concatenate([[0], np.cumsum(lengths)[:-1]])
        if not np.array_equal(offsets, expected):
            raise RuntimeError(f"{self.name}: pieces are not contiguous (a layout bug, not bad input)")
        payload = memoryview(data)[bounds[0] : bounds[-1]] if len(tokens) else b""
        self._bin.write(payload)
        is_start = pieces.column("piece").to_numpy() == 0
        self.starts.extend(offsets[is_start].tolist())
        values = pa.array(np.frombuffer(payload, dtype=self.format.dtype))
        list_offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        self._pending.append(
            pa.Table.from_arrays(
                [
                    pieces.column("id"),
                    pa.ListArray.from_arrays(list_offsets, values),
                    pieces.column("offset"),
                    pieces.column("piece"),
                ],
                schema=self._parquet.schema,
            )
        )
        self.tokens += int(lengths.sum())
        self._write_row_groups(final=False)

    def _write_row_groups(self, final: bool) -> None:
        """Write the pending pieces in whole row groups (and the rest too when `final`)."""
        pending = pa.concat_tables(self._pending) if self._pending else None
        self._pending = []
        if pending is None:
            return
        whole = pending.num_rows if final else pending.num_rows - pending.num_rows % ROW_GROUP_PIECES
        if whole:
            self._parquet.write_table(pending.slice(0, whole), row_group_size=ROW_GROUP_PIECES)
        if whole < pending.num_rows:
            self._pending.append(pending.slice(whole))

    def commit(self) -> dict[str, object]:
        """Finish and publish the three files; returns the shard's manifest entry."""
        self._bin.seek(0)
        self._bin.write(encode_header(self.format, self.tokens))
        self._bin.close()
        self._write_row_groups(final=True)
        self._parquet.close()
        np.asarray(self.starts, dtype="<u8").tofile(self._staged["idx"].path)
        entry: dict[str, object] = {
            "split": "val" if self.index == 0 else "train",
            "index": self.index,
            **{suffix: f"{self.name}.{suffix}" for suffix in SUFFIXES},
            "tokens": self.tokens,
            "documents": len(self.starts),
            "sha256": {suffix: _sha256_file(self._staged[suffix].path) for suffix in SUFFIXES},
        }
        try:
            for suffix in SUFFIXES:
                self._staged[suffix].publish()
        finally:
            self.abort()
        return entry

    def abort(self) -> None:
        """Drop the staged files not yet published. Idempotent: `commit` calls it, and a task that fails
        in `commit` calls it again, which must not hide the commit's own error."""
        if not self._bin.closed:
            self._bin.close()
        if self._parquet.is_open:
            self._parquet.close()
        for staged in self._staged.values():
            staged.discard()
