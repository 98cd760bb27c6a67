"""The crawl index: collinfo.json read from a file, over HTTP and from S3; latest / named crawls; the
WARC manifest key; which crawls a ROOT has processed; the `tokenmill crawls` table."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tokenmill.jobs.cli import main
from tokenmill.pipeline.ingest.crawls import (
    CrawlIndexError,
    crawl_root,
    load_index,
    parse_index,
    pending,
    resolve,
    warc_manifest,
)
from tokenmill.pipeline.storage import S3Options

CRAWLS = Path(__file__).parent / "data" / "crawls"
INDEX = CRAWLS / "collinfo.json"
NEWEST = [
    "CC-MAIN-2025-51",
    "CC-MAIN-2025-47",
    "CC-MAIN-2024-51",
    "CC-MAIN-2024-46",
    "CC-MAIN-2024-42",
    "CC-MAIN-2024-38",
    "CC-MAIN-2024-33",
    "CC-MAIN-2024-30",
    "CC-MAIN-2024-26",
    "CC-MAIN-2024-22",
]
S3 = S3Options()


@pytest.fixture(scope="module")
def index_url() -> Iterator[str]:
    """tests/data/crawls served by a real HTTP server on 127.0.0.1."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(CRAWLS))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/collinfo.json"
    finally:
        server.shutdown()
        thread.join()


def _processed_root(tmp_path: Path) -> str:
    """A ROOT where CC-MAIN-2025-51 finished and CC-MAIN-2025-47 stopped before its manifest."""
    done = tmp_path / "crawls" / "CC-MAIN-2025-51" / "tokens" / "gpt2"
    done.mkdir(parents=True)
    (done / "manifest.json").write_text("{}")
    unfinished = tmp_path / "crawls" / "CC-MAIN-2025-47" / "tokens" / "gpt2"
    unfinished.mkdir(parents=True)
    (unfinished / "train_000001.bin").write_bytes(b"\0")
    return str(tmp_path)


def test_local_index_newest_first_without_the_arc_era_crawls():
    crawls = load_index(str(INDEX), S3)
    assert [crawl.id for crawl in crawls] == NEWEST
    assert crawls[-1].name == "May 2024 Index"
    assert (crawls[-1].start, crawls[-1].end) == ("2024-05-17T00:00:00", "2024-05-31T00:00:00")


def test_order_comes_from_the_ids_not_the_listing():
    entries = json.loads(INDEX.read_text())
    assert [crawl.id for crawl in parse_index(json.dumps(entries[::-1]).encode(), "reversed")] == NEWEST


def test_resolve_latest_and_named():
    crawls = load_index(str(INDEX), S3)
    assert resolve(crawls, "latest").id == "CC-MAIN-2025-51"
    assert resolve(crawls, "CC-MAIN-2024-33").name == "August 2024 Index"
    with pytest.raises(CrawlIndexError, match="no crawl 'CC-MAIN-2023-50'.*newest: CC-MAIN-2025-51"):
        resolve(crawls, "CC-MAIN-2023-50")


def test_warc_manifest_and_crawl_root():
    crawl = resolve(load_index(str(INDEX), S3), "CC-MAIN-2024-22")
    assert warc_manifest(crawl) == "crawl-data/CC-MAIN-2024-22/warc.paths.gz"
    assert crawl_root("s3://bucket/runs", crawl) == "s3://bucket/runs/crawls/CC-MAIN-2024-22"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b'[{"id": "CC-MAIN-2024-22"', "not JSON"),
        (b'{"id": "CC-MAIN-2024-22"}', "expected a JSON list of crawls, got dict"),
        (b'[{"id": "CC-MAIN-2024-22"}, {"name": "no id"}]', "entry 1 has no CC-MAIN-YYYY-WW id"),
        (b'[{"id": "CC-MAIN-2024-22"}, {"id": "CC-NEWS-2024-05"}]', "entry 1 has no CC-MAIN-YYYY-WW id"),
        (b'["CC-MAIN-2024-22"]', "entry 0 has no CC-MAIN-YYYY-WW id"),
        (b"[]", "lists no crawls"),
    ],
)
def test_malformed_index_is_a_clear_error(tmp_path, document, message):
    path = tmp_path / "collinfo.json"
    path.write_bytes(document)
    with pytest.raises(CrawlIndexError, match=message) as error:
        load_index(str(path), S3)
    assert str(path) in str(error.value)


def test_pending_leaves_out_crawls_with_a_complete_token_set(tmp_path):
    crawls = load_index(str(INDEX), S3)
    assert [crawl.id for crawl in pending(crawls, _processed_root(tmp_path), S3)] == NEWEST[1:]


def test_index_over_http_equals_the_file(index_url):
    assert load_index(index_url, S3) == load_index(str(INDEX), S3)


def test_index_and_root_on_s3(s3_endpoint):
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="tokenmill-crawls")
    client.put_object(Bucket="tokenmill-crawls", Key="collinfo.json", Body=INDEX.read_bytes())
    client.put_object(
        Bucket="tokenmill-crawls", Key="root/crawls/CC-MAIN-2024-51/tokens/o200k/manifest.json", Body=b"{}"
    )
    s3 = S3Options(endpoint_url=s3_endpoint)
    crawls = load_index("s3://tokenmill-crawls/collinfo.json", s3)
    assert [crawl.id for crawl in crawls] == NEWEST
    assert "CC-MAIN-2024-51" not in {crawl.id for crawl in pending(crawls, "s3://tokenmill-crawls/root", s3)}
    assert len(pending(crawls, "s3://tokenmill-crawls/root", s3)) == len(NEWEST) - 1


def test_cli_table_marks_processed_and_new(index_url, tmp_path, capsys):
    assert main(["crawls", "--index", index_url, "--root", _processed_root(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "from", "to", "status"]
    assert len(lines) == 1 + len(NEWEST)
    assert lines[1].split() == [
        "CC-MAIN-2025-51",
        "December",
        "2025",
        "Index",
        "2025-12-04T00:00:00",
        "2025-12-17T00:00:00",
        "processed",
    ]
    assert all(line.endswith(" new") for line in lines[2:])
    assert [line.split()[0] for line in lines[1:]] == NEWEST


def test_cli_table_without_root(capsys):
    assert main(["crawls", "--index", str(INDEX)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "name", "from", "to"]
    assert lines[-1].split()[0] == "CC-MAIN-2024-22"
