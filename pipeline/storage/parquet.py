"""Parquet through the storage layer: the same calls for local paths and s3://, from the driver or a task.

Files are read from the end (the footer holds the schema and where each column chunk lies), so on S3
they are opened with `open_seekable` and only the footer and the wanted columns' bytes are fetched.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import (
    S3Options,
    directory_prefix,
    exists,
    join,
    list_files,
    local_path,
    open_seekable,
    read_bytes,
    stat,
    write_with,
)

BATCH_ROWS = 8192  # documents run to kilobytes each; 64k-row batches would be hundreds of MB


def _is_dataset_file(relative_name: str) -> bool:
    """Parquet files that a reader should see: not hidden ("."), not bookkeeping ("_SUCCESS", "_tmp/")."""
    parts = relative_name.split("/")
    return parts[-1].endswith(".parquet") and not any(part.startswith((".", "_")) for part in parts)


def dataset_files(uri: str, s3: S3Options) -> list[str]:
    """The files of a Parquet dataset: `uri` itself if it is a .parquet file, else the sorted visible
    *.parquet files under it as a directory or prefix, at any depth."""
    uri = local_path(uri) or uri
    if uri.endswith(".parquet"):
        try:
            stat(uri, s3)
            return [uri]
        except FileNotFoundError:
            pass
    prefix = directory_prefix(uri)
    return [found for found in list_files(prefix, s3) if _is_dataset_file(found[len(prefix) :])]


def _describe(field: pa.Field) -> str:
    return f"{field.type}{'' if field.nullable else ' not null'}"


def _difference(expected: pa.Schema, found: pa.Schema) -> str:
    """How `found` differs from `expected`, in a few words: lacking, extra and changed columns."""
    lacking = [name for name in expected.names if name not in found.names]
    extra = [name for name in found.names if name not in expected.names]
    changed = [
        f"{field.name} is {_describe(field)}, not {_describe(expected.field(field.name))}"
        for field in found
        if field.name in expected.names and not field.equals(expected.field(field.name))
    ]
    parts = [f"lacks {', '.join(lacking)}"] if lacking else []
    parts += [f"has extra {', '.join(extra)}"] if extra else []
    return "; ".join(parts + changed) or "columns in another order"


def _open(uri: str, s3: S3Options) -> Any:
    """pyarrow's native file for a local path (no Python in the read path), else a seekable reader."""
    path = local_path(uri)
    return pa.OSFile(path) if path is not None else open_seekable(uri, s3)


def read_schema(uri: str, s3: S3Options) -> pa.Schema:
    """The schema from the file's footer, without reading any data."""
    with _open(uri, s3) as source:
        return pq.read_schema(source)


def check_schema(uri: str, found: pa.Schema, expected: pa.Schema) -> None:
    """A UserError naming the file unless `found` equals `expected` (names, types, nullability)."""
    if not found.equals(expected, check_metadata=False):
        raise UserError(
            f"{uri} is not like the dataset's other files ({_difference(expected, found)}); "
            "move it out of the dataset or rewrite the dataset"
        )


def present_columns(
    uri: str, found: pa.Schema, columns: Sequence[str] | None, *, missing_ok: bool = False
) -> list[str]:
    """`columns` (all of the file's when None) that a file with schema `found` has, in the order asked;
    a lacking one is a UserError naming the file unless missing_ok."""
    if columns is None:
        return list(found.names)
    missing = [name for name in columns if name not in found.names]
    if missing and not missing_ok:
        raise UserError(f"{uri} has no column {', '.join(missing)}; check that it is the right input")
    return [name for name in columns if name in found.names]


def iter_batches(
    uri: str,
    s3: S3Options,
    columns: Sequence[str] | None = None,
    *,
    missing_ok: bool = False,
    schema: pa.Schema | None = None,
    batch_rows: int = BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """The file's rows in batches, with only `columns` (in that order) if given.

    A wanted column the file lacks is an error, or left out with missing_ok. With `schema`, the file's
    schema must equal it (field names, types and nullability), as all files of one dataset do.
    """
    with _open(uri, s3) as source:
        parquet = pq.ParquetFile(source)
        if schema is not None:
            check_schema(uri, parquet.schema_arrow, schema)
        wanted = present_columns(uri, parquet.schema_arrow, columns, missing_ok=missing_ok)
        yield from parquet.iter_batches(batch_size=batch_rows, columns=wanted)


def read_table(
    uri: str, s3: S3Options, columns: Sequence[str] | None = None, *, missing_ok: bool = False
) -> pa.Table:
    """The whole file (or its `columns`) as one table, for files small enough to hold; as iter_batches."""
    with _open(uri, s3) as source:
        parquet = pq.ParquetFile(source)
        wanted = present_columns(uri, parquet.schema_arrow, columns, missing_ok=missing_ok)
        return parquet.read(columns=wanted)


def write_batches(uri: str, schema: pa.Schema, batches: Iterable[pa.RecordBatch], s3: S3Options) -> None:
    """Stream batches into one zstd Parquet file, committed atomically (a local temp file first).
    Batches are cast to `schema`, as a Parquet file has one."""

    def write(handle: Any) -> None:
        with pq.ParquetWriter(handle, schema, compression="zstd") as writer:
            for batch in batches:
                if not batch.schema.equals(schema):
                    batch = batch.cast(schema)
                writer.write_batch(batch)

    write_with(uri, write, s3)


def write_table(uri: str, table: pa.Table, s3: S3Options) -> None:
    """Write a whole table as one zstd Parquet file, committed atomically."""
    write_batches(uri, table.schema, table.to_batches(), s3)


# ---- the commit record of a dataset tokenmill wrote (see tokenmill.jobs.spark.datasets) ------------------

RECORD_NAME = "_DATASET.json"
RECORD_FORMAT = "tokenmill-dataset/1"


@dataclass(frozen=True)
class DatasetRecord:
    """`_DATASET.json`: the command that owns the directory, its current parts (names relative to it),
    runs that may have left parts of their own, and parts replaced but perhaps not yet deleted."""

    writer: str
    parts: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps({"format": RECORD_FORMAT, **asdict(self)}, indent=1).encode()


def read_record(uri: str, s3: S3Options) -> DatasetRecord | None:
    """The dataset's commit record, or None when the directory has none."""
    record_uri = join(local_path(uri) or uri, RECORD_NAME)
    if not exists(record_uri, s3):
        return None
    found: dict[str, Any] = json.loads(read_bytes(record_uri, s3))
    return DatasetRecord(found["writer"], found["parts"], found["pending"], found["retired"])


def committed_files(uri: str, s3: S3Options) -> list[str]:
    """The files a reader of `uri` should read: the parts its record lists, else (a dataset tokenmill did
    not write) every visible Parquet file under it."""
    uri = local_path(uri) or uri
    record = None if uri.endswith(".parquet") else read_record(uri, s3)
    return dataset_files(uri, s3) if record is None else [join(uri, name) for name in record.parts]
