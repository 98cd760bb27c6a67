"""Reads that cannot end short: S3 and HTTP inputs read through a real fault-injecting proxy on
127.0.0.1 (tests/faults.py) that cuts responses mid-body, answers 503 SlowDown or both.

A cut connection is resumed from the byte reached, so ingest keeps exactly the documents of a clean
run; a source that stays broken fails its unit (no marker, exit status 3) for the next run to repair;
a file truncated as stored is still bad data, a counted read error in a complete unit.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow.dataset as pads
import pytest

from tests.conftest import WARC_DIR
from tests.faults import Fault, FaultProxy, serve_files
from tokenmill.jobs import cli
from tokenmill.pipeline.storage import IncompleteReadError, S3Options, SourceChangedError, open_input

BUCKET = "cc-faults"
WHOLE = ["dolma-sample-0000.warc.gz", "resiliparse-warcfile.warc.gz"]
TRUNCATED = "truncated-on-server.warc.gz"  # dolma-sample-0001 cut to 2/3 of its bytes where it is stored
NAMES = [*WHOLE, TRUNCATED]
WARC_GETS = r"\.warc\.gz"  # the inputs' GETs, not listings or HEADs


@pytest.fixture(scope="module")
def warc_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("served")
    for name in WHOLE:
        shutil.copy(WARC_DIR / name, directory / name)
    data = (WARC_DIR / "dolma-sample-0001.warc.gz").read_bytes()
    (directory / TRUNCATED).write_bytes(data[: len(data) * 2 // 3])
    return directory


@pytest.fixture(scope="module")
def crawl(s3_endpoint: str, warc_files: Path) -> str:
    """The WARC files under one S3 prefix; returns the prefix URI."""
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    for name in NAMES:
        client.upload_file(str(warc_files / name), BUCKET, f"crawl/{name}")
    return f"s3://{BUCKET}/crawl/"


def _ingest(inputs: list[str], root: Path, endpoint: str) -> int:
    return cli.main(["ingest", *inputs, "-o", str(root), "--s3-endpoint", endpoint, "--master", "local[2]"])


def _outcome(root: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Per input file (by base name) its counts, and every document without where it was read from:
    what must not depend on the faults on the way."""
    units = {}
    for path in (root / "stats" / "units").glob("*.json"):
        stats = json.loads(path.read_text())
        units[stats["path"].rsplit("/", 1)[-1]] = {
            key: stats[key]
            for key in ("records", "html_responses", "kept", "dropped", "errors", "bytes_read")
        }
    documents = pads.dataset(str(root / "documents"), format="parquet").to_table().drop(["file_path"])
    return units, sorted(documents.to_pylist(), key=lambda row: row["id"])


def _committed(root: Path) -> dict[str, str]:
    """Base name of each unit -> its unit name, for units with a completion marker."""
    markers = (json.loads(path.read_text()) for path in (root / "markers").glob("*.done"))
    return {record["stats"]["path"].rsplit("/", 1)[-1]: record["stats"]["unit"] for record in markers}


@pytest.fixture(scope="module")
def clean(spark, crawl: str, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("clean") / "out"
    assert _ingest([crawl], root, s3_endpoint) == 0
    return _outcome(root)


def test_a_file_truncated_on_the_server_is_a_counted_read_error(clean):
    units, documents = clean
    assert units[TRUNCATED]["errors"] == {"read:truncated": 1} and units[TRUNCATED]["kept"] > 0
    assert all(units[name]["errors"] == {} for name in WHOLE)
    assert len(documents) == sum(unit["kept"] for unit in units.values())


def test_cuts_on_half_the_s3_gets_lose_nothing(spark, crawl, s3_endpoint, clean, tmp_path):
    root = tmp_path / "out"
    with FaultProxy(s3_endpoint, Fault("cut", fraction=0.5, path=WARC_GETS)) as proxy:
        assert _ingest([crawl], root, proxy.url) == 0
    assert _outcome(root) == clean
    assert proxy.injected["cut"] == 2  # every 2nd of 5 GETs: one per file and a resume for each cut
    assert set(_committed(root)) == set(NAMES)  # the truncated file's unit completes as before


def test_cuts_and_503s_on_http_inputs_lose_nothing(spark, warc_files, s3_endpoint, clean, tmp_path):
    root = tmp_path / "out"
    faults = Fault("throttle", fraction=0.2), Fault("cut", fraction=0.5, path=WARC_GETS)
    with serve_files(warc_files) as origin, FaultProxy(origin, *faults) as proxy:
        assert _ingest([f"{proxy.url}/{name}" for name in NAMES], root, s3_endpoint) == 0
    assert _outcome(root) == clean
    assert proxy.injected["cut"] > 0 and proxy.injected["throttle"] > 0


def test_a_fifth_of_s3_requests_throttled_lose_nothing(spark, crawl, s3_endpoint, clean, tmp_path):
    root = tmp_path / "out"
    with FaultProxy(s3_endpoint, Fault("throttle", fraction=0.2, methods=("GET", "HEAD"))) as proxy:
        assert _ingest([crawl], root, proxy.url) == 0
    assert _outcome(root) == clean
    assert proxy.injected["throttle"] > 0


def test_cuts_beyond_the_retry_budget_fail_the_unit_and_a_rerun_repairs_it(
    spark, crawl, s3_endpoint, clean, tmp_path, capsys
):
    root, victim = tmp_path / "out", WHOLE[1]
    with FaultProxy(s3_endpoint, Fault("cut", fraction=1.0, path=re.escape(victim))) as proxy:
        assert _ingest([crawl], root, proxy.url) == cli.EXIT_INCOMPLETE
    assert proxy.requests < 100  # bounded: resumes stop after the budget
    assert re.search(r"FAILED unit resiliparse-warcfile-\w+ .*IncompleteReadError", capsys.readouterr().err)
    committed = _committed(root)
    assert set(committed) == set(NAMES) - {victim}
    visible = {path.stem for path in (root / "documents").glob("*.parquet")}
    assert visible == set(committed.values())  # nothing of the failed unit is visible

    assert _ingest([crawl], root, s3_endpoint) == 0
    assert f"{len(NAMES) - 1} already complete, 1 to process" in capsys.readouterr().out
    assert _outcome(root) == clean


# -- the storage layer's streams, without Spark ----------------------------------------------------------


@pytest.fixture
def blob(s3_endpoint: str, tmp_path: Path) -> Iterator[tuple[bytes, Path, str]]:
    """3 MB of random bytes as a local file (served over HTTP by tests) and as an S3 object."""
    data = random.Random(11).randbytes(3_000_000)
    (tmp_path / "blob.bin").write_bytes(data)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="blob.bin", Body=data)
    yield data, tmp_path, f"s3://{BUCKET}/blob.bin"


def _through(proxy: FaultProxy) -> S3Options:
    return S3Options(endpoint_url=proxy.url)


def _served(proxy: FaultProxy) -> str:
    return f"{proxy.url}/blob.bin"


def test_s3_and_http_streams_resume_cut_responses_from_the_byte_reached(s3_endpoint, blob):
    data, directory, uri = blob
    with FaultProxy(s3_endpoint, Fault("cut", first=3)) as proxy, open_input(uri, _through(proxy)) as stream:
        assert stream.read() == data
    assert proxy.injected["cut"] == 3 and proxy.requests == 4
    with (
        serve_files(directory) as origin,
        FaultProxy(origin, Fault("cut", first=3)) as proxy,
        open_input(_served(proxy), S3Options()) as stream,
    ):
        assert stream.read() == data
    assert proxy.injected["cut"] == 3 and proxy.requests == 4


def test_http_503s_are_retried(blob):
    data, directory, _ = blob
    with (
        serve_files(directory) as origin,
        FaultProxy(origin, Fault("throttle", first=2)) as proxy,
        open_input(_served(proxy), S3Options()) as stream,
    ):
        assert stream.read() == data
    assert proxy.injected["throttle"] == 2


def test_delayed_responses_arrive_late_and_whole(s3_endpoint, blob):
    data, _, uri = blob
    started = time.monotonic()
    with (
        FaultProxy(s3_endpoint, Fault("delay", first=1, seconds=0.5)) as proxy,
        open_input(uri, _through(proxy)) as stream,
    ):
        assert stream.read() == data
    assert time.monotonic() - started >= 0.5 and proxy.injected["delay"] == 1


def test_cuts_beyond_the_budget_raise_incomplete_read_error(s3_endpoint, blob):
    data, directory, uri = blob
    with (
        FaultProxy(s3_endpoint, Fault("cut", fraction=1.0)) as proxy,
        pytest.raises(IncompleteReadError) as raised,
        open_input(uri, _through(proxy)) as stream,
    ):
        stream.read()
    assert raised.value.expected == len(data) and raised.value.got < len(data)
    with (
        serve_files(directory) as origin,
        FaultProxy(origin, Fault("cut", fraction=1.0)) as proxy,
        pytest.raises(IncompleteReadError) as raised,
        open_input(_served(proxy), S3Options()) as stream,
    ):
        stream.read()
    assert raised.value.expected == len(data) and raised.value.got < len(data)


def test_a_file_rewritten_between_a_cut_and_its_resume_is_refused(s3_endpoint, blob):
    data, directory, uri = blob
    with FaultProxy(s3_endpoint, Fault("cut", first=1)) as proxy, open_input(uri, _through(proxy)) as stream:
        boto3.client("s3", endpoint_url=s3_endpoint).put_object(
            Bucket=BUCKET, Key="blob.bin", Body=data[::-1]
        )
        with pytest.raises(SourceChangedError, match="changed while it was read"):
            stream.read()
    with (
        serve_files(directory) as origin,
        FaultProxy(origin, Fault("cut", first=1)) as proxy,
        open_input(_served(proxy), S3Options()) as stream,
    ):
        (directory / "blob.bin").write_bytes(data + b"appended")
        with pytest.raises(SourceChangedError, match="changed while it was read"):
            stream.read()
