"""Every stage with its root on S3: a moto S3 server over real HTTP on 127.0.0.1, reached through
--s3-endpoint, with pip's pyspark (no Hadoop S3 connector). `tokenmill run` with input and output on S3
equals the same run on local disk: documents per unit, cluster assignments, final ids, byte-identical
token shards. Then dedup --against, scrub, train-tokenizer, report and train on S3 roots."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from tests.conftest import WARC_DIR
from tokenmill.jobs import cli

pytestmark = [pytest.mark.spark, pytest.mark.s3]

INPUTS = ["dolma-sample-0000.warc.gz", "resiliparse-warcfile.warc.gz"]
IN_BUCKET, OUT_BUCKET = "cc-in", "tm-out"


def mirror(client, bucket: str, prefix: str, destination: Path) -> Path:
    """Download every object under s3://bucket/prefix/ with plain boto3 (not tokenmill's storage layer)."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            target = destination / item["Key"][len(prefix) + 1 :]
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(target))
    return destination


def table(path: Path, sort: str = "id"):
    """The rows in id order, without `file_path` (where each input was read from differs by design)."""
    read = pq.read_table(path).sort_by(sort)
    return read.drop_columns(["file_path"]) if "file_path" in read.column_names else read


def units(root: Path) -> dict[str, Path]:
    """Unit Parquet by input file name: `<name>-<8 hex of the input URI>.parquet`."""
    return {path.name.rsplit("-", 1)[0]: path for path in (root / "documents").glob("*.parquet")}


def assert_same_run(local: Path, other: Path) -> None:
    """Documents per unit, cluster assignments, final documents and token shards all equal."""
    local_units, other_units = units(local), units(other)
    assert local_units and sorted(local_units) == sorted(other_units)
    for name, path in local_units.items():
        assert table(path).equals(table(other_units[name])), name
    assert table(local / "dedup" / "clusters").equals(table(other / "dedup" / "clusters"))
    assert table(local / "final").equals(table(other / "final"))
    local_manifest = json.loads((local / "tokens" / "gpt2" / "manifest.json").read_text())
    other_manifest = json.loads((other / "tokens" / "gpt2" / "manifest.json").read_text())
    assert local_manifest["shards"] == other_manifest["shards"]  # the same sha256 for every file
    for shard in local_manifest["shards"]:
        for kind in ("bin", "idx"):
            name = shard[kind]
            assert (local / "tokens" / "gpt2" / name).read_bytes() == (
                other / "tokens" / "gpt2" / name
            ).read_bytes()


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for bucket in (IN_BUCKET, OUT_BUCKET):
        client.create_bucket(Bucket=bucket)
    for name in INPUTS:
        client.upload_file(str(WARC_DIR / name), IN_BUCKET, f"crawl/{name}")
    return s3_endpoint, client


@pytest.fixture(scope="module")
def runs(s3, spark, tmp_path_factory):
    """The same `tokenmill run` on local disk and on S3 (input and output), in the shared session."""
    endpoint, client = s3
    base = tmp_path_factory.mktemp("s3-run")
    common = ["--dump", "t", "--master", "local[2]"]
    local = base / "local"
    assert cli.main(["run", *[str(WARC_DIR / name) for name in INPUTS], "-o", str(local), *common]) == 0
    remote = ["run", f"s3://{IN_BUCKET}/crawl/", "-o", f"s3://{OUT_BUCKET}/run1", "--s3-endpoint", endpoint]
    assert cli.main([*remote, *common]) == 0
    return local, mirror(client, OUT_BUCKET, "run1", base / "mirror"), remote + common


def test_run_on_s3_equals_the_local_run(runs):
    local, remote, _ = runs
    assert_same_run(local, remote)
    assert (remote / "report.html").is_file() and (remote / "dedup" / "_COMPLETE.json").is_file()


def test_a_rerun_on_s3_does_nothing(runs, capsys):
    _, _, argv = runs
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "0 to process" in out and out.count("nothing to do") == 2


def test_dedup_against_an_s3_root(s3, runs, tmp_path, capsys):
    endpoint, client = s3
    root = f"s3://{OUT_BUCKET}/run2"
    source = f"s3://{OUT_BUCKET}/run1/documents"
    args = ["dedup", "-o", root, "--input", source, "--against", f"s3://{OUT_BUCKET}/run1"]
    assert cli.main([*args, "--s3-endpoint", endpoint, "--master", "local[2]"]) == 0
    stats = json.loads(client.get_object(Bucket=OUT_BUCKET, Key="run2/stats/dedup.json")["Body"].read())
    assert stats["prior_duplicates"] == stats["docs_in"] > 0 and stats["survivors"] == 0


def test_scrub_on_s3(s3, runs, tmp_path):
    endpoint, client = s3
    out = f"s3://{OUT_BUCKET}/scrubbed"
    args = ["scrub", "--input", f"s3://{OUT_BUCKET}/run1/final", "-o", out, "--phones"]
    assert cli.main([*args, "--s3-endpoint", endpoint, "--master", "local[2]"]) == 0
    local, _, _ = runs
    scrubbed = table(mirror(client, OUT_BUCKET, "scrubbed", tmp_path / "scrubbed"))
    final = table(local / "final")
    assert scrubbed.column("id").equals(final.column("id"))
    assert {"pii_email", "pii_ip", "pii_ipv6", "pii_phone"} <= set(scrubbed.column_names)


def test_train_tokenizer_and_report_on_s3(s3, runs, tmp_path):
    endpoint, client = s3
    root = f"s3://{OUT_BUCKET}/run1"
    common = ["--s3-endpoint", endpoint]
    assert (
        cli.main(["train-tokenizer", "-o", root, "--vocab-size", "400", "--master", "local[2]", *common]) == 0
    )
    config = json.loads(
        client.get_object(Bucket=OUT_BUCKET, Key="run1/tokenizer/bpe-400/tokenizer.json")["Body"].read()
    )
    assert config["vocab_size"] == 400 and config["training"]["documents"] > 0
    client.delete_object(Bucket=OUT_BUCKET, Key="run1/report.html")
    assert cli.main(["report", "-o", root, *common]) == 0
    page = client.get_object(Bucket=OUT_BUCKET, Key="run1/report.html")["Body"].read().decode()
    assert "<svg" in page and "gpt2" in page


def test_train_starts_from_the_bucket(s3, runs, tmp_path):
    endpoint, _ = s3
    data = f"s3://{OUT_BUCKET}/run1/tokens/gpt2"
    args = ["train", "--data", data, "--config", "tiny", "--max-steps", "2", "--device", "cpu"]
    args += [
        "--out",
        str(tmp_path / "train"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--s3-endpoint",
        endpoint,
    ]
    assert cli.main(args) == 0
    assert (tmp_path / "train" / "checkpoint.pt").is_file()
    local, _, _ = runs
    cached = {path.name: path.read_bytes() for path in (tmp_path / "cache").rglob("*.bin")}
    assert cached and all(
        data == (local / "tokens" / "gpt2" / name).read_bytes() for name, data in cached.items()
    )
