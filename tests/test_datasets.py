"""Parquet datasets in and out of Spark (local[2]) through the storage layer, locally and on a moto S3
server over HTTP, with no Hadoop filesystem involved."""

from __future__ import annotations

import datetime as dt
import os

import boto3
import pyarrow as pa
import pytest
from pyspark.sql import DataFrame, SparkSession

from tokenmill.jobs.spark.datasets import read_dataset, write_dataset
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options, join, list_files, write_atomic
from tokenmill.pipeline.storage.parquet import dataset_files, write_table

SCHEMA = "id long, text string, score double, tokens array<int>, kept boolean, seen timestamp"


@pytest.fixture(scope="module")
def s3(s3_endpoint) -> S3Options:
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="tokenmill-datasets")
    return S3Options(endpoint_url=s3_endpoint)


@pytest.fixture(params=["local", "s3"])
def root(request, s3, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "out")
    return f"s3://tokenmill-datasets/{request.node.name}"


def _documents(spark: SparkSession, rows: int, partitions: int) -> DataFrame:
    data = [
        (
            i,
            f"document {i} " * (i % 7),
            i / 3,
            list(range(i % 5)),
            i % 2 == 0,
            dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(minutes=i),
        )
        for i in range(rows)
    ]
    return spark.createDataFrame(data, SCHEMA).repartition(partitions)


def _names(uri: str, s3: S3Options) -> list[str]:
    prefix = uri.rstrip("/") + "/"
    return [found[len(prefix) :] for found in list_files(prefix, s3)]


def test_write_then_read_round_trip(spark, s3, root):
    frame = _documents(spark, 200, 3)
    written = write_dataset(frame, join(root, "documents"), s3)
    assert written == [join(root, "documents", f"part-{index:05d}.parquet") for index in range(3)]
    back = read_dataset(spark, join(root, "documents"), s3)
    assert back.schema == frame.schema
    assert back.rdd.getNumPartitions() == 3  # one per file
    assert sorted(back.collect()) == sorted(frame.collect())


def test_read_projects_columns_in_the_order_asked(spark, s3, root):
    write_dataset(_documents(spark, 50, 2), join(root, "documents"), s3)
    back = read_dataset(spark, join(root, "documents"), s3, columns=["score", "id"])
    assert back.columns == ["score", "id"]
    assert sorted(tuple(row) for row in back.collect()) == [(i / 3, i) for i in range(50)]
    with pytest.raises(UserError, match="has no column language"):
        read_dataset(spark, join(root, "documents"), s3, columns=["id", "language"])


def test_rewrite_removes_stale_parts_and_nothing_else(spark, s3, root):
    target = join(root, "documents")
    assert len(write_dataset(_documents(spark, 100, 4), target, s3)) == 4
    write_atomic(join(target, "README.txt"), b"notes that tokenmill did not write", s3)
    write_atomic(join(target, "_COMPLETE.json"), b"{}", s3)
    narrower = _documents(spark, 30, 2)
    write_dataset(narrower, target, s3)
    assert _names(target, s3) == ["README.txt", "_COMPLETE.json", "part-00000.parquet", "part-00001.parquet"]
    assert sorted(read_dataset(spark, target, s3).collect()) == sorted(narrower.collect())


def test_empty_frame_keeps_its_columns(spark, s3, root):
    empty = spark.createDataFrame([], SCHEMA)
    written = write_dataset(empty.repartition(2), join(root, "documents"), s3)
    assert written == [join(root, "documents", "part-00000.parquet")]
    back = read_dataset(spark, join(root, "documents"), s3)
    assert back.schema == empty.schema and back.count() == 0


def test_missing_dataset_is_a_user_error(spark, s3, root):
    with pytest.raises(UserError, match=r"no Parquet files under .*nothing; run `tokenmill dedup` first"):
        read_dataset(spark, join(root, "nothing"), s3, produced_by="dedup")


def test_a_file_with_another_schema_fails_naming_it(spark, s3, tmp_path):
    target = str(tmp_path / "mixed")
    write_table(join(target, "a.parquet"), pa.table({"id": pa.array([1, 2], pa.int64())}), s3)
    write_table(join(target, "b.parquet"), pa.table({"id": pa.array([3], pa.int32())}), s3)
    frame = read_dataset(spark, target, s3)
    with pytest.raises(Exception, match=r"b\.parquet is not like the dataset's other files"):
        frame.collect()


def test_unsigned_tokens_are_widened_for_spark(spark, s3, tmp_path):
    tokens = pa.array([[50256, 65535], [], [1]], pa.list_(pa.uint16()))
    write_table(str(tmp_path / "tokens" / "part-00000.parquet"), pa.table({"tokens": tokens}), s3)
    back = read_dataset(spark, str(tmp_path / "tokens"), s3)
    assert back.schema.simpleString() == "struct<tokens:array<int>>"
    assert sorted(row.tokens for row in back.collect()) == [[], [1], [50256, 65535]]


def test_datasets_never_touch_hadoop_filesystems(spark, s3, tmp_path):
    """Nothing under the output is in Hadoop's layout (_SUCCESS, .crc files, _temporary)."""
    target = str(tmp_path / "plain")
    write_dataset(_documents(spark, 10, 1), target, s3)
    assert sorted(os.listdir(target)) == ["part-00000.parquet"]
    assert dataset_files(target, s3) == [os.path.join(target, "part-00000.parquet")]
