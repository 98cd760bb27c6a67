"""Parquet datasets into and out of Spark through tokenmill's storage layer, never Hadoop filesystems.

Spark only schedules the tasks: each task reads or writes whole Parquet files from Python with
`tokenmill.pipeline.storage`, so local paths, s3:// and S3-compatible endpoints work on any cluster,
including one without the s3a connector (pip's pyspark has none). No data passes through the driver;
it lists files and reads one footer.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence

import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import StructType

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import (
    S3Options,
    delete,
    directory_prefix,
    join,
    list_files,
    local_path,
    remove_stale_temps,
)
from tokenmill.pipeline.storage.parquet import (
    dataset_files,
    iter_batches,
    present_columns,
    read_schema,
    write_batches,
    write_table,
)

PART_NAME = re.compile(r"part-\d{5,}\.parquet")
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


def read_dataset(
    spark: SparkSession,
    uri: str,
    s3: S3Options,
    columns: Sequence[str] | None = None,
    *,
    produced_by: str | None = None,
) -> DataFrame:
    """A DataFrame over the Parquet files at `uri`, one partition per file, optionally only `columns`.

    The schema comes from the first file's footer; the others must share it, and a task that finds one
    that does not fails naming it. `produced_by` names the stage that writes the dataset, for the error
    when there is none.
    """
    files = dataset_files(uri, s3)
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


def write_dataset(frame: DataFrame, uri: str, s3: S3Options) -> list[str]:
    """Write each partition as `part-<partition:05d>.parquet` (zstd) under `uri`; returns their URIs.

    A retried or speculative task rewrites the same name atomically. Then part files that an earlier,
    wider write left are deleted, and nothing else under `uri` is touched. When every partition is
    empty, one empty part file keeps the columns visible to readers.
    """
    uri = local_path(uri) or uri
    schema = _arrow_schema(frame.sparkSession, frame.schema)

    def write_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        rows = (batch for batch in batches if batch.num_rows)
        first = next(rows, None)
        if first is None:
            return
        name = f"part-{TaskContext.get().partitionId():05d}.parquet"
        write_batches(join(uri, name), schema, itertools.chain([first], rows), s3)
        yield pa.RecordBatch.from_pydict({"name": [name]}, schema=_WRITTEN)

    written = {row.name for row in frame.mapInArrow(write_partition, "name string").collect()}
    if not written:
        empty = "part-00000.parquet"
        write_table(join(uri, empty), schema.empty_table(), s3)
        written = {empty}
    prefix = directory_prefix(uri)
    for found in list_files(prefix, s3):
        name = found[len(prefix) :]
        if PART_NAME.fullmatch(name) and name not in written:
            delete(found, s3)
    remove_stale_temps(uri, "part-")
    return [join(uri, name) for name in sorted(written)]
