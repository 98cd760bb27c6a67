"""Storage over local files, S3 (a real moto server on 127.0.0.1) and HTTP (a local http.server)."""

from __future__ import annotations

import os
import pickle
import random
import time
from collections.abc import Iterator

import boto3
import botocore
import botocore.paginate
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from tests.conftest import WARC_DIR
from tests.faults import Fault, FaultProxy, serve_files
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.ingest.warc import RawRecord, iter_records
from tokenmill.pipeline.storage import (
    S3Options,
    SourceChangedError,
    StagedFile,
    content_fingerprint,
    delete,
    exists,
    join,
    list_files,
    list_infos,
    open_input,
    open_seekable,
    read_bytes,
    remove_stale_temps,
    s3_client,
    stat,
    upload_file_atomic,
    write_atomic,
)
from tokenmill.pipeline.storage.parquet import (
    dataset_files,
    iter_batches,
    read_schema,
    read_table,
    write_table,
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


def test_staged_file_is_built_hidden_beside_its_target_and_renamed(tmp_path):
    target = tmp_path / "shards" / "train_000001.bin"
    staged = StagedFile(str(target), S3Options())
    with open(staged.path, "wb") as handle:
        handle.write(b"tokens")
    assert os.path.dirname(staged.path) == str(target.parent) and not target.exists()
    assert _hidden(target.parent) == [os.path.basename(staged.path)]  # out of listings until published
    staged.publish()
    assert target.read_bytes() == b"tokens" and _hidden(target.parent) == []


def test_discarded_staged_file_leaves_the_old_target_and_no_temp(tmp_path):
    target = tmp_path / "train_000001.bin"
    target.write_bytes(b"old")
    staged = StagedFile(str(target), S3Options())
    with open(staged.path, "wb") as handle:
        handle.write(b"half")
    staged.discard()
    staged.discard()  # idempotent: a failing commit discards again
    assert target.read_bytes() == b"old" and _hidden(tmp_path) == []


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
    with serve_files(WARC_DIR) as url:
        yield url


def test_http_open_input_streams_a_warc(http_root):
    with open_input(f"{http_root}/resiliparse-warcfile.warc.gz", S3Options()) as stream:
        records = [record for record in iter_records(stream) if isinstance(record, RawRecord)]
    assert len(records) == 50


def test_http_read_and_exists(http_root):
    assert read_bytes(f"{http_root}/whirlwind.warc.gz", S3Options()) == WHIRLWIND.read_bytes()
    assert exists(f"{http_root}/whirlwind.warc.gz", S3Options())
    assert not exists(f"{http_root}/no-such.warc.gz", S3Options())


def test_other_schemes_are_a_user_error(http_root):
    with pytest.raises(UserError, match="cannot reach gs://bucket/key"):
        exists("gs://bucket/key", S3Options())
    with pytest.raises(UserError, match="only local paths and s3:// URIs"):
        write_atomic(f"{http_root}/out.json", b"{}", S3Options())


# -- versions and fingerprints -------------------------------------------------------------------------


def test_stat_and_list_infos_give_size_and_version(s3, tmp_path):
    options, client = s3
    client.put_object(Bucket="tokenmill-storage", Key="infos/a.bin", Body=b"12345")
    etag = client.head_object(Bucket="tokenmill-storage", Key="infos/a.bin")["ETag"].strip('"')
    info = stat("s3://tokenmill-storage/infos/a.bin", options)
    assert (info.size, info.version) == (5, etag)
    assert list_infos("s3://tokenmill-storage/infos/", options) == [info]
    with pytest.raises(FileNotFoundError):
        stat("s3://tokenmill-storage/infos/missing.bin", options)

    (tmp_path / "a.bin").write_bytes(b"123")
    local = stat(str(tmp_path / "a.bin"), options)
    assert (local.size, local.version) == (3, str((tmp_path / "a.bin").stat().st_mtime_ns))
    assert list_infos(str(tmp_path), options) == [local]


def _rewrite_same_size(uri: str, options: S3Options, data: bytes) -> None:
    time.sleep(0.01)  # a new modification time even on filesystems with coarse clocks
    write_atomic(uri, data, options)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_content_fingerprint_follows_every_visible_file(where, s3, tmp_path):
    options, _ = s3
    root = str(tmp_path / "dataset") if where == "local" else "s3://tokenmill-storage/fingerprint/dataset"
    write_atomic(join(root, "a.parquet"), b"aaaa", options)
    write_atomic(join(root, "sub", "b.parquet"), b"bbbb", options)
    write_atomic(f"{root}-old/c.parquet", b"cccc", options)  # a sibling sharing the name's prefix
    first = content_fingerprint(root, options)
    assert content_fingerprint(root + "/", options) == first

    write_atomic(join(root, ".a.parquet.1234.tmp"), b"partial", options)  # a crashed write's leftover
    assert content_fingerprint(root, options) == first

    _rewrite_same_size(join(root, "sub", "b.parquet"), options, b"BBBB")
    rewritten = content_fingerprint(root, options)
    assert rewritten != first

    write_atomic(join(root, "d.parquet"), b"", options)
    assert content_fingerprint(root, options) not in (first, rewritten)

    single = content_fingerprint(join(root, "a.parquet"), options)
    _rewrite_same_size(join(root, "a.parquet"), options, b"AAAA")
    assert content_fingerprint(join(root, "a.parquet"), options) != single


def test_s3_seekable_reads_equal_the_objects_bytes(s3):
    options, client = s3
    data = random.Random(1).randbytes(10 << 20)  # more than the 8 MiB read buffer
    client.put_object(Bucket="tokenmill-storage", Key="seek/random.bin", Body=data)
    rng = random.Random(2)
    with open_seekable("s3://tokenmill-storage/seek/random.bin", options) as reader:
        for _ in range(10):
            offset, length = rng.randrange(len(data)), rng.choice([1, 100, 70_000, 3 << 20])
            reader.seek(offset)
            assert reader.read(length) == data[offset : offset + length]
        reader.seek(-10, os.SEEK_END)
        assert reader.read() == data[-10:] and reader.tell() == len(data)
        assert reader.read(5) == b""


def test_s3_seekable_refuses_an_object_rewritten_mid_read(s3):
    options, client = s3
    data = random.Random(4).randbytes(9 << 20)
    client.put_object(Bucket="tokenmill-storage", Key="seek/rewritten.bin", Body=data)
    with open_seekable("s3://tokenmill-storage/seek/rewritten.bin", options) as reader:
        assert reader.read(10) == data[:10]
        client.put_object(Bucket="tokenmill-storage", Key="seek/rewritten.bin", Body=data[::-1])
        reader.seek(-10, os.SEEK_END)  # beyond the first 8 MiB in the buffer: a new GET
        with pytest.raises(SourceChangedError, match="changed while it was read"):
            reader.read()


def test_s3_seekable_resumes_a_response_cut_short(s3, s3_endpoint):
    options, client = s3
    data = random.Random(5).randbytes(3_000_000)
    client.put_object(Bucket="tokenmill-storage", Key="seek/cut.bin", Body=data)
    with FaultProxy(s3_endpoint, Fault("cut", first=3, path="seek/cut.bin")) as proxy:
        through_proxy = S3Options(endpoint_url=proxy.url)
        with open_seekable("s3://tokenmill-storage/seek/cut.bin", through_proxy) as reader:
            reader.seek(1000)
            assert reader.read(2_000_000) == data[1000:2_001_000]
    assert proxy.injected["cut"] == 3  # every cut happened, and each was resumed


# -- Parquet -------------------------------------------------------------------------------------------


def _documents(rows: int) -> pa.Table:
    rng = random.Random(6)
    return pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "text": [rng.randbytes(rng.randrange(10, 200)).hex() for _ in range(rows)],
            "score": [rng.random() for _ in range(rows)],
            "tokens": pa.array([[i, i + 1] for i in range(rows)], pa.list_(pa.uint16())),
        }
    )


def test_parquet_round_trip_through_s3_with_column_projection(s3):
    options, _ = s3
    table, uri = _documents(20_000), "s3://tokenmill-storage/parquet/documents/part-00000.parquet"
    write_table(uri, table, options)
    assert read_schema(uri, options).equals(table.schema)
    batches = list(iter_batches(uri, options, ["score", "id"], batch_rows=5000))
    assert [batch.num_rows for batch in batches] == [5000] * 4
    assert pa.Table.from_batches(batches).equals(table.select(["score", "id"]))
    assert pa.Table.from_batches(list(iter_batches(uri, options))).equals(table)
    with pytest.raises(UserError, match="has no column language"):
        list(iter_batches(uri, options, ["id", "language"]))
    kept = pa.Table.from_batches(list(iter_batches(uri, options, ["language", "id"], missing_ok=True)))
    assert kept.column_names == ["id"] and kept.num_rows == table.num_rows
    whole = read_table(uri, options, ["language", "score"], missing_ok=True)
    assert whole.equals(table.select(["score"]))


def test_parquet_is_zstd_and_checked_against_the_datasets_schema(tmp_path):
    uri = str(tmp_path / "part-00000.parquet")
    write_table(uri, _documents(10), S3Options())
    assert pq.ParquetFile(uri).metadata.row_group(0).column(0).compression == "ZSTD"
    other = _documents(1).schema.remove(1).set(0, pa.field("id", pa.int32()))
    differences = r"\(has extra text; id is int64, not int32\)"
    with pytest.raises(UserError, match=rf"part-00000.parquet is not like .*{differences}"):
        list(iter_batches(uri, S3Options(), schema=other))


def test_parquet_footer_read_fetches_only_the_footer(s3):
    options, _ = s3
    uri = "s3://tokenmill-storage/parquet/big.parquet"
    table = pa.table({"blob": [random.Random(i).randbytes(20_000) for i in range(200)]})  # ~4 MB
    write_table(uri, table, options)
    ranges: list[str] = []
    events = s3_client(options, "tokenmill-storage").meta.events
    event = "before-parameter-build.s3.GetObject"

    def record(params: dict, **_: object) -> None:
        ranges.append(params["Range"])

    events.register(event, record)
    try:
        assert read_schema(uri, options).equals(table.schema)
    finally:
        events.unregister(event, record)
    spans = [[int(number) for number in r.removeprefix("bytes=").split("-")] for r in ranges]
    fetched = sum(end - start + 1 for start, end in spans)
    assert 0 < fetched <= 64 << 10 < stat(uri, options).size


@pytest.mark.parametrize("where", ["local", "s3"])
def test_dataset_files_are_the_visible_parquet_files(where, s3, tmp_path):
    options, _ = s3
    root = str(tmp_path / "docs") if where == "local" else "s3://tokenmill-storage/files/docs"
    names = ["b.parquet", "a.parquet", "lang=en/c.parquet", ".a.parquet.12ab.tmp", ".hidden.parquet"]
    names += ["_SUCCESS", "_tmp/d.parquet", "notes.txt"]
    for name in names:
        write_atomic(join(root, name), b"", options)
    write_atomic(f"{root}-old/e.parquet", b"", options)
    expected = [join(root, name) for name in ("a.parquet", "b.parquet", "lang=en/c.parquet")]
    assert dataset_files(root, options) == expected
    assert dataset_files(root + "/", options) == expected
    assert dataset_files(join(root, "b.parquet"), options) == [join(root, "b.parquet")]
    assert dataset_files(join(root, "missing"), options) == []


@pytest.mark.parametrize("durable", [True, False])
def test_write_with_is_atomic_with_or_without_the_disk_sync(tmp_path, monkeypatch, durable):
    from tokenmill.pipeline.storage import local, write_with

    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(local.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    target = tmp_path / "runs" / "run-00000.bin"

    def failing(handle):
        handle.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_with(str(target), failing, S3Options(), durable=durable)
    assert not target.exists() and os.listdir(target.parent) == []  # nothing half-written is left
    write_with(str(target), lambda handle: handle.write(b"tokens"), S3Options(), durable=durable)
    assert target.read_bytes() == b"tokens" and os.listdir(target.parent) == ["run-00000.bin"]
    assert bool(synced) is durable  # the file and its directory are synced only when asked
