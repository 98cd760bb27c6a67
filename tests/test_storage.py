"""Storage over local files, S3 (a real moto server on 127.0.0.1) and HTTP (a local http.server)."""

from __future__ import annotations

import functools
import os
import pickle
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import boto3
import botocore
import botocore.paginate
import pytest
from botocore.exceptions import ClientError

from tests.conftest import WARC_DIR
from tokenmill.pipeline.ingest.warc import RawRecord, iter_records
from tokenmill.pipeline.storage import (
    S3Options,
    delete,
    exists,
    join,
    list_files,
    open_input,
    read_bytes,
    remove_stale_temps,
    s3_client,
    upload_file_atomic,
    write_atomic,
)

WHIRLWIND = WARC_DIR / "whirlwind.warc.gz"


def _hidden(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


# -- local ---------------------------------------------------------------------------------------------


def test_write_atomic_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "stats.json"
    write_atomic(str(target), b"first", S3Options())
    write_atomic(str(target), b"second", S3Options())
    assert target.read_bytes() == b"second"
    assert _hidden(target.parent) == []


def test_written_files_get_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_atomic(str(tmp_path / "out.json"), b"{}", S3Options())
    finally:
        os.umask(old)
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "documents" / "unit.parquet"
    write_atomic(str(target), b"old", S3Options())
    with pytest.raises(FileNotFoundError):
        upload_file_atomic(str(tmp_path / "missing.parquet"), str(target), S3Options())
    assert target.read_bytes() == b"old" and _hidden(target.parent) == []


def test_upload_file_atomic_local_copies(tmp_path):
    source = tmp_path / "tmp.parquet"
    source.write_bytes(b"x" * 3_000_000)
    upload_file_atomic(str(source), str(tmp_path / "out" / "unit.parquet"), S3Options())
    assert (tmp_path / "out" / "unit.parquet").read_bytes() == source.read_bytes()
    assert source.exists()


def test_remove_stale_temps_deletes_only_that_units_leftovers(tmp_path):
    for name in (
        ".unit-1.parquet.ab12.tmp",
        ".unit-1.json.cd34.tmp",
        ".unit-2.parquet.ef56.tmp",
        "unit-1.parquet",
    ):
        (tmp_path / name).write_bytes(b"")
    assert remove_stale_temps(str(tmp_path), "unit-1.") == 2
    assert sorted(os.listdir(tmp_path)) == [".unit-2.parquet.ef56.tmp", "unit-1.parquet"]
    assert remove_stale_temps(str(tmp_path / "missing"), "unit-1.") == 0


def test_local_read_exists_list_delete(tmp_path):
    for name in ("b/2.warc.gz", "a/1.warc.gz", "a/.hidden", "c.warc.gz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(name.encode())
    assert list_files(str(tmp_path), S3Options()) == [
        str(tmp_path / n) for n in ("a/1.warc.gz", "b/2.warc.gz", "c.warc.gz")
    ]
    assert list_files(str(tmp_path / "nothing"), S3Options()) == []
    assert read_bytes(f"file://{tmp_path}/a/1.warc.gz", S3Options()) == b"a/1.warc.gz"
    assert exists(str(tmp_path / "c.warc.gz"), S3Options())
    delete(str(tmp_path / "c.warc.gz"), S3Options())
    delete(str(tmp_path / "c.warc.gz"), S3Options())  # repeatable
    assert not exists(str(tmp_path / "c.warc.gz"), S3Options())


def test_join():
    assert join("s3://bucket/out/", "documents", "/unit.parquet") == "s3://bucket/out/documents/unit.parquet"
    assert (
        join("s3://commoncrawl/", "crawl-data/CC-MAIN-2019-35/x.warc.gz")
        == "s3://commoncrawl/crawl-data/CC-MAIN-2019-35/x.warc.gz"
    )
    assert join("/data/out", "stats", "units", "u.json") == "/data/out/stats/units/u.json"
    assert join("/data/base/", "/crawl-data/x") == "/data/base/crawl-data/x"
    assert join("https://data.commoncrawl.org", "crawl-data/x") == "https://data.commoncrawl.org/crawl-data/x"


# -- S3 ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(s3_endpoint) -> tuple[S3Options, object]:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="tokenmill-storage")
    return S3Options(endpoint_url=s3_endpoint), client


def test_s3_write_read_list_exists_delete(s3, tmp_path):
    options, client = s3
    write_atomic("s3://tokenmill-storage/out/stats/b.json", b"{}", options)
    source = tmp_path / "doc.parquet"
    source.write_bytes(b"p" * 10_000)
    upload_file_atomic(str(source), "s3://tokenmill-storage/out/documents/a.parquet", options)
    assert read_bytes("s3://tokenmill-storage/out/stats/b.json", options) == b"{}"
    assert read_bytes("s3://tokenmill-storage/out/documents/a.parquet", options) == source.read_bytes()
    assert list_files("s3://tokenmill-storage/out/", options) == [
        "s3://tokenmill-storage/out/documents/a.parquet",
        "s3://tokenmill-storage/out/stats/b.json",
    ]
    assert list_files("s3://tokenmill-storage/nothing/", options) == []
    assert exists("s3://tokenmill-storage/out/stats/b.json", options)
    assert not exists("s3://tokenmill-storage/out/stats/missing.json", options)
    delete("s3://tokenmill-storage/out/stats/b.json", options)
    assert not exists("s3://tokenmill-storage/out/stats/b.json", options)


def test_s3_listing_follows_pages(s3, monkeypatch):
    """S3 returns at most 1000 keys per call; pages of 10 show the same thing with 25 keys."""
    options, client = s3
    for index in range(25):
        client.put_object(Bucket="tokenmill-storage", Key=f"many/{index:04d}", Body=b"")
    paginate = botocore.paginate.Paginator.paginate
    monkeypatch.setattr(
        botocore.paginate.Paginator,
        "paginate",
        lambda self, **kw: paginate(self, PaginationConfig={"PageSize": 10}, **kw),
    )
    assert list_files("s3://tokenmill-storage/many/", options) == [
        f"s3://tokenmill-storage/many/{i:04d}" for i in range(25)
    ]


def test_s3_open_input_streams_a_warc(s3):
    options, client = s3
    client.upload_file(str(WHIRLWIND), "tokenmill-storage", "crawl/whirlwind.warc.gz")
    with open_input("s3://tokenmill-storage/crawl/whirlwind.warc.gz", options) as stream:
        records = [record for record in iter_records(stream) if isinstance(record, RawRecord)]
    assert [record.rec_type for record in records] == ["warcinfo", "request", "response", "metadata"]


def test_unsigned_exactly_for_the_commoncrawl_bucket(s3):
    options, client = s3
    assert s3_client(options, "commoncrawl").meta.config.signature_version is botocore.UNSIGNED
    assert s3_client(options, "tokenmill-storage").meta.config.signature_version is not botocore.UNSIGNED
    forced = S3Options(endpoint_url=options.endpoint_url, unsigned=True)
    assert s3_client(forced, "tokenmill-storage").meta.config.signature_version is botocore.UNSIGNED
    assert s3_client(options, "commoncrawl") is s3_client(options, "commoncrawl")  # cached per process

    # Against the server: an anonymous reader gets public objects and is refused private ones.
    client.create_bucket(Bucket="commoncrawl")
    client.put_object(Bucket="commoncrawl", Key="crawl-data/public.txt", Body=b"public", ACL="public-read")
    client.put_object(Bucket="commoncrawl", Key="crawl-data/private.txt", Body=b"private")
    assert read_bytes("s3://commoncrawl/crawl-data/public.txt", options) == b"public"
    with pytest.raises(ClientError, match="403|Forbidden|AccessDenied"):
        read_bytes("s3://commoncrawl/crawl-data/private.txt", options)
    signed = S3Options(endpoint_url=options.endpoint_url, unsigned=False)
    assert read_bytes("s3://commoncrawl/crawl-data/private.txt", signed) == b"private"


def test_endpoint_from_the_environment(s3, monkeypatch):
    options, _ = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", options.endpoint_url)
    assert S3Options().endpoint() == options.endpoint_url
    assert s3_client(S3Options(), "tokenmill-storage").meta.endpoint_url == options.endpoint_url


def test_s3_options_travel_by_pickle():
    options = S3Options(endpoint_url="http://127.0.0.1:9000", unsigned=True)
    assert pickle.loads(pickle.dumps(options)) == options


# -- HTTP ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http_root() -> Iterator[str]:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(WARC_DIR))
    handler.log_message = lambda *args: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_open_input_streams_a_warc(http_root):
    with open_input(f"{http_root}/resiliparse-warcfile.warc.gz", S3Options()) as stream:
        records = [record for record in iter_records(stream) if isinstance(record, RawRecord)]
    assert len(records) == 50


def test_http_read_and_exists(http_root):
    assert read_bytes(f"{http_root}/whirlwind.warc.gz", S3Options()) == WHIRLWIND.read_bytes()
    assert exists(f"{http_root}/whirlwind.warc.gz", S3Options())
    assert not exists(f"{http_root}/no-such.warc.gz", S3Options())
