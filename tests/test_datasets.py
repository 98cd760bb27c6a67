"""Parquet datasets in and out of Spark (local[2]) through the storage layer, locally and on a moto S3
server over HTTP, with no Hadoop filesystem involved: versions swapped in whole by a commit record, a
failed write invisible to readers, and only tokenmill's own parts ever deleted."""

from __future__ import annotations

import datetime as dt
import os
import re
import time

import boto3
import pyarrow as pa
import pytest
from pyspark import TaskContext
from pyspark.sql import DataFrame, SparkSession

from tokenmill.jobs.spark.datasets import (
    RECORD_NAME,
    check_output_dataset,
    read_dataset,
    read_record,
    write_dataset,
)
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options, join, list_files, write_atomic
from tokenmill.pipeline.storage.parquet import dataset_files, write_table

WRITER = "test"
PART = re.compile(r"part-(\d{8}T\d{6}-[0-9a-f]{8})-(\d{5})\.parquet")
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
    written = write_dataset(frame, join(root, "documents"), s3, writer=WRITER)
    names = [uri.rsplit("/", 1)[-1] for uri in written]
    assert [PART.fullmatch(name).group(2) for name in names] == ["00000", "00001", "00002"]
    assert len({PART.fullmatch(name).group(1) for name in names}) == 1  # one run id
    assert _names(join(root, "documents"), s3) == [RECORD_NAME, *names]
    assert read_record(join(root, "documents"), s3).parts == names
    back = read_dataset(spark, join(root, "documents"), s3)
    assert back.schema == frame.schema
    assert back.rdd.getNumPartitions() == 3  # one per file
    assert sorted(back.collect()) == sorted(frame.collect())


def test_read_projects_columns_in_the_order_asked(spark, s3, root):
    write_dataset(_documents(spark, 50, 2), join(root, "documents"), s3, writer=WRITER)
    back = read_dataset(spark, join(root, "documents"), s3, columns=["score", "id"])
    assert back.columns == ["score", "id"]
    assert sorted(tuple(row) for row in back.collect()) == [(i / 3, i) for i in range(50)]
    with pytest.raises(UserError, match="has no column language"):
        read_dataset(spark, join(root, "documents"), s3, columns=["id", "language"])


def test_rewrite_swaps_versions_and_deletes_only_its_own_parts(spark, s3, root):
    target = join(root, "documents")
    assert len(write_dataset(_documents(spark, 100, 4), target, s3, writer=WRITER)) == 4
    write_atomic(join(target, "README.txt"), b"notes that tokenmill did not write", s3)
    narrower = _documents(spark, 30, 2)
    written = write_dataset(narrower, target, s3, writer=WRITER)
    parts = [uri.rsplit("/", 1)[-1] for uri in written]
    assert _names(target, s3) == ["README.txt", RECORD_NAME, *parts]
    assert sorted(read_dataset(spark, target, s3).collect()) == sorted(narrower.collect())


def _failing_last_partition(frame: DataFrame) -> DataFrame:
    """The frame, except that its last partition's task fails once the others have had time to write."""
    last = frame.rdd.getNumPartitions() - 1

    def compute(batches):
        if TaskContext.get().partitionId() == last:
            time.sleep(3)
            raise RuntimeError("injected task failure")
        yield from batches

    return frame.mapInArrow(compute, frame.schema)


def test_a_failed_write_leaves_the_previous_version_whole(spark, s3, root):
    """A write whose last task fails leaves parts of its own beside the current ones: readers still get
    the previous version exactly, and the next write deletes the failed run's parts."""
    target = join(root, "documents")
    first = _documents(spark, 40, 2)
    write_dataset(first, target, s3, writer=WRITER)
    with pytest.raises(Exception, match="injected task failure"):
        write_dataset(_failing_last_partition(_documents(spark, 90, 3)), target, s3, writer=WRITER)
    (pending,) = read_record(target, s3).pending
    assert any(name.startswith(f"part-{pending}-") for name in _names(target, s3))  # the fault happened
    assert sorted(read_dataset(spark, target, s3).collect()) == sorted(first.collect())

    third = _documents(spark, 25, 2)
    parts = [uri.rsplit("/", 1)[-1] for uri in write_dataset(third, target, s3, writer=WRITER)]
    assert _names(target, s3) == [RECORD_NAME, *parts]
    assert sorted(read_dataset(spark, target, s3).collect()) == sorted(third.collect())


def test_outputs_that_are_not_the_commands_own_are_refused(spark, s3, root):
    target = join(root, "scrubbed")
    check_output_dataset(target, s3, "scrub", [join(root, "documents")])  # missing: fine
    write_dataset(_documents(spark, 5, 1), target, s3, writer="scrub")
    check_output_dataset(target, s3, "scrub", [join(root, "documents")])  # its own earlier output: fine
    with pytest.raises(UserError, match=r"holds the output of `tokenmill scrub`"):
        check_output_dataset(target, s3, "dedup")
    with pytest.raises(UserError, match="is the input itself"):
        check_output_dataset(target, s3, "scrub", [target + "/"])
    for source in (join(target, "part-x.parquet"), root):
        with pytest.raises(UserError, match="overlap"):
            check_output_dataset(target, s3, "scrub", [source])
    foreign = join(root, "notes")
    write_atomic(join(foreign, "a", "thesis.txt"), b"not tokenmill's", s3)
    with pytest.raises(UserError, match=r"is not empty and is not an earlier output .* a/thesis\.txt"):
        check_output_dataset(foreign, s3, "scrub")
    with pytest.raises(UserError, match="is not empty"):
        write_dataset(_documents(spark, 5, 1), foreign, s3, writer="scrub")
    assert _names(foreign, s3) == ["a/thesis.txt"]


def test_empty_frame_keeps_its_columns(spark, s3, root):
    empty = spark.createDataFrame([], SCHEMA)
    (written,) = write_dataset(empty.repartition(2), join(root, "documents"), s3, writer=WRITER)
    assert PART.fullmatch(written.rsplit("/", 1)[-1]).group(2) == "00000"
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
    (written,) = write_dataset(_documents(spark, 10, 1), target, s3, writer=WRITER)
    assert sorted(os.listdir(target)) == [RECORD_NAME, os.path.basename(written)]
    assert dataset_files(target, s3) == [written]  # pyarrow's and Spark's readers skip "_" files too
