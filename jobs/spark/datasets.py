"""Parquet datasets into and out of Spark through tokenmill's storage layer, never Hadoop filesystems.

Spark only schedules the tasks: each task reads or writes whole Parquet files from Python with
`tokenmill.pipeline.storage`, so local paths, s3:// and S3-compatible endpoints work on any cluster,
including one without the s3a connector (pip's pyspark has none). No data passes through the driver;
it lists files and reads one footer.

A written dataset is swapped in whole, and only files tokenmill wrote are ever deleted, on S3 too (where
nothing can be renamed). Each write names its parts with a run id, `part-<run>-<partition>.parquet`,
and `_DATASET.json`, the commit record, says which parts are current:

1. the record is rewritten with the run id under `pending` (the current parts unchanged);
2. the tasks write the new parts beside the current ones;
3. the record is rewritten listing the new parts (the swap: readers move to them at once) and the
   previous ones under `retired`;
4. the retired parts are deleted.

`read_dataset` reads the parts the record lists, so a reader sees one version whole, never a mix, and
a crash at any step leaves the previous version readable. The next write first deletes what a crash
left: retired parts, and parts of pending runs that no record lists. A directory that holds files but
no record of the same command is not tokenmill's to overwrite and is refused before any work.
"""

from __future__ import annotations

import itertools
import os
import secrets
import time
from collections.abc import Iterator, Sequence

import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.lock import LOCK_NAME
from tokenmill.pipeline.storage import (
    S3Options,
    delete,
    directory_prefix,
    join,
    list_files,
    local_path,
    remove_stale_temps,
    write_atomic,
)
from tokenmill.pipeline.storage.parquet import (
    RECORD_NAME,
    DatasetRecord,
    committed_files,
    iter_batches,
    present_columns,
    read_record,
    read_schema,
    write_batches,
    write_table,
)

_WRITTEN = pa.schema([pa.field("name", pa.string())])
# Spark has no unsigned integers; like Spark's own Parquet reader, widen them to the next signed type.
_SIGNED = {pa.uint8(): pa.int16(), pa.uint16(): pa.int32(), pa.uint32(): pa.int64()}


def _spark_storable(arrow_type: pa.DataType) -> pa.DataType:
    """The type with unsigned integers widened, inside lists and structs too."""
    if arrow_type in _SIGNED:
        return _SIGNED[arrow_type]
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        value = arrow_type.value_field
        return pa.list_(value.with_type(_spark_storable(value.type)))
    if pa.types.is_struct(arrow_type):
        return pa.struct([field.with_type(_spark_storable(field.type)) for field in arrow_type])
    return arrow_type


def _arrow_schema(spark: SparkSession, schema: StructType) -> pa.Schema:
    """The Arrow schema Spark exchanges with Python for a Spark schema (timestamps in the session zone)."""
    return to_arrow_schema(schema, timezone=spark.conf.get("spark.sql.session.timeZone"))


def _write_record(uri: str, record: DatasetRecord, s3: S3Options) -> None:
    write_atomic(join(uri, RECORD_NAME), record.to_json(), s3)


def _comparable(uri: str) -> str:
    path = local_path(uri)
    return os.path.realpath(path) if path is not None else uri.rstrip("/")


def overlap(first: str, second: str) -> bool:
    """Whether two locations are the same or one lies inside the other."""
    a, b = _comparable(first), _comparable(second)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def check_output_dataset(uri: str, s3: S3Options, writer: str, inputs: Sequence[str] = ()) -> None:
    """A UserError unless `tokenmill <writer>` may (re)write the dataset at `uri`: it lies apart from
    every input, and it is missing, empty, or an earlier output of the same command."""
    for source in inputs:
        if _comparable(source) == _comparable(uri):
            raise UserError(f"{writer}: the output {uri} is the input itself; write to a separate directory")
        if overlap(source, uri):
            raise UserError(
                f"{writer}: the output {uri} and the input {source} overlap; write to a separate directory"
            )
    record = read_record(uri, s3)
    if record is not None:
        if record.writer != writer:
            raise UserError(
                f"{writer}: {uri} holds the output of `tokenmill {record.writer}`; "
                "choose another output directory"
            )
        return
    prefix = directory_prefix(local_path(uri) or uri)
    foreign = [found[len(prefix) :] for found in list_files(prefix, s3) if found[len(prefix) :] != LOCK_NAME]
    if foreign:
        raise UserError(
            f"{writer}: {uri} is not empty and is not an earlier output of `tokenmill {writer}` "
            f"(it holds {foreign[0]}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}); "
            "choose an empty or new directory"
        )


def _remove_leftovers(uri: str, record: DatasetRecord, s3: S3Options) -> None:
    """Delete what the record names as no longer current: retired parts, and parts that a pending
    run wrote but no record lists (a write that crashed before its swap)."""
    current = set(record.parts)
    crashed = tuple(f"part-{run}-" for run in record.pending)
    if crashed:
        prefix = directory_prefix(uri)
        for found in list_files(prefix, s3):
            name = found[len(prefix) :]
            if name.startswith(crashed) and name not in current:
                delete(found, s3)
    for name in record.retired:
        if name not in current:
            delete(join(uri, name), s3)
    remove_stale_temps(uri, "part-")
    remove_stale_temps(uri, RECORD_NAME)  # a record rewrite that a crash cut short


def _run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"


def read_dataset(
    spark: SparkSession,
    uri: str,
    s3: S3Options,
    columns: Sequence[str] | None = None,
    *,
    produced_by: str | None = None,
) -> DataFrame:
    """A DataFrame over the Parquet files at `uri`, one partition per file, optionally only `columns`.

    The files are those the dataset's commit record lists, if it has one (see the module docstring).
    The schema comes from the first file's footer; the others must share it, and a task that finds one
    that does not fails naming it. `produced_by` names the stage that writes the dataset, for the error
    when there is none.
    """
    files = committed_files(uri, s3)
    if not files:
        stage = f"`tokenmill {produced_by}`" if produced_by else "the stage that writes it"
        raise UserError(f"no Parquet files under {uri}; run {stage} first or check the path")
    file_schema = read_schema(files[0], s3)
    wanted = present_columns(files[0], file_schema, columns)
    projected = pa.schema(
        [file_schema.field(name).with_type(_spark_storable(file_schema.field(name).type)) for name in wanted]
    )
    spark_schema = from_arrow_schema(projected)
    exchanged = _arrow_schema(spark, spark_schema)

    def read_files(uri_batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for uri_batch in uri_batches:
            for file_uri in uri_batch.column("uri").to_pylist():
                for batch in iter_batches(file_uri, s3, wanted, schema=file_schema):
                    yield batch.cast(exchanged)

    file_list = spark.sparkContext.parallelize([(name,) for name in files], numSlices=len(files))
    return spark.createDataFrame(file_list, "uri string").mapInArrow(read_files, spark_schema)


def write_dataset(frame: DataFrame, uri: str, s3: S3Options, *, writer: str) -> list[str]:
    """Write each partition as `part-<run>-<partition:05d>.parquet` (zstd) under `uri` and swap them in
    as the dataset's current version; returns their URIs.

    `writer` names the command, which must own `uri` (check_output_dataset). A retried or speculative
    task rewrites the same name atomically. When every partition is empty, one empty part file keeps
    the columns visible to readers. Files that no record of this command lists are never touched.
    """
    uri = local_path(uri) or uri
    check_output_dataset(uri, s3, writer)
    previous = read_record(uri, s3) or DatasetRecord(writer)
    _remove_leftovers(uri, previous, s3)
    run = _run_id()
    _write_record(uri, DatasetRecord(writer, previous.parts, pending=[run]), s3)
    schema = _arrow_schema(frame.sparkSession, frame.schema)

    def write_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        rows = (batch for batch in batches if batch.num_rows)
        first = next(rows, None)
        if first is None:
            return
        name = f"part-{run}-{TaskContext.get().partitionId():05d}.parquet"
        write_batches(join(uri, name), schema, itertools.chain([first], rows), s3)
        yield pa.RecordBatch.from_pydict({"name": [name]}, schema=_WRITTEN)

    written = sorted({row.name for row in frame.mapInArrow(write_partition, "name string").collect()})
    if not written:
        written = [f"part-{run}-00000.parquet"]
        write_table(join(uri, written[0]), schema.empty_table(), s3)
    current = DatasetRecord(writer, written, retired=previous.parts)
    _write_record(uri, current, s3)
    _remove_leftovers(uri, current, s3)
    return [join(uri, name) for name in written]
