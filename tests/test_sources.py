"""Input expansion (paths, globs, S3 prefixes and globs, URLs, Common Crawl manifests) and unit names."""

from __future__ import annotations

import gzip
import subprocess
import sys

import boto3
import pytest

from tests.conftest import WARC_DIR
from tokenmill.pipeline.ingest.sources import InputError, expand_inputs, unit_name
from tokenmill.pipeline.storage import S3Options

CC_PATHS = WARC_DIR / "cc-notebooks_CC-MAIN-2019-35-warc.paths"


def test_real_cc_manifest_resolves_against_the_commoncrawl_bucket():
    uris = expand_inputs([str(CC_PATHS)], S3Options())
    lines = CC_PATHS.read_text().split()
    assert len(uris) == len(lines) == 100
    assert uris == [f"s3://commoncrawl/{line}" for line in lines]
    assert all(uri.startswith("s3://commoncrawl/crawl-data/CC-MAIN-2019-35/segments/") for uri in uris)
    assert all(uri.endswith(".warc.gz") for uri in uris)


def test_gzipped_manifest_with_blank_and_absolute_lines(tmp_path):
    manifest = tmp_path / "warc.paths.gz"
    lines = [
        "crawl-data/CC-MAIN-2024-22/a.warc.gz",
        "",
        "  ",
        "s3://other-bucket/b.warc.gz",
        "/data/c.warc.gz",
        "crawl-data/CC-MAIN-2024-22/a.warc.gz",
    ]
    manifest.write_bytes(gzip.compress("\n".join(lines).encode()))
    uris = expand_inputs([str(manifest)], S3Options(), cc_base="https://data.commoncrawl.org/")
    assert uris == [
        "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-22/a.warc.gz",
        "s3://other-bucket/b.warc.gz",
        "/data/c.warc.gz",
    ]


def test_misleadingly_named_manifest_is_read_as_a_manifest():
    """CC-MAIN-2024-22.warc.paths.gz lists 300 cc-index parquet files, not WARCs."""
    uris = expand_inputs([str(WARC_DIR / "CC-MAIN-2024-22.warc.paths.gz")], S3Options())
    assert len(uris) == 300 and all(uri.endswith(".gz.parquet") for uri in uris)


def test_empty_or_missing_manifest(tmp_path):
    (tmp_path / "empty.paths").write_text("\n\n")
    with pytest.raises(InputError, match="lists no files"):
        expand_inputs([str(tmp_path / "empty.paths")], S3Options())
    with pytest.raises(InputError, match="missing.paths"):
        expand_inputs([str(tmp_path / "missing.paths")], S3Options())


@pytest.fixture
def tree(tmp_path):
    for name in ("b/2.warc.gz", "a/1.warc.gz", "a/deeper/3.warc.gz", "a/.partial.tmp", "top.wet.gz"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def test_local_files_directories_and_globs(tree, monkeypatch):
    everything = [str(tree / n) for n in ("a/1.warc.gz", "a/deeper/3.warc.gz", "b/2.warc.gz", "top.wet.gz")]
    assert expand_inputs([str(tree)], S3Options()) == everything
    assert expand_inputs([str(tree / "*" / "*.warc.gz")], S3Options()) == [
        str(tree / "a/1.warc.gz"),
        str(tree / "b/2.warc.gz"),
    ]
    assert expand_inputs([str(tree / "**" / "*.warc.gz")], S3Options()) == everything[:3]
    assert expand_inputs([str(tree / "[ab]")], S3Options()) == everything[:3]
    monkeypatch.chdir(tree)
    assert expand_inputs(["top.wet.gz", f"file://{tree}/top.wet.gz"], S3Options()) == [
        str(tree / "top.wet.gz")
    ]


def test_duplicates_are_dropped_in_order(tree):
    uris = expand_inputs(
        [str(tree / "top.wet.gz"), str(tree / "a"), str(tree / "a" / "1.warc.gz")], S3Options()
    )
    assert uris == [str(tree / "top.wet.gz"), str(tree / "a/1.warc.gz"), str(tree / "a/deeper/3.warc.gz")]


def test_urls_are_taken_as_they_are():
    url = "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-22/x.warc.gz"
    assert expand_inputs([url, url], S3Options()) == [url]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: str(root / "missing.warc.gz"), "input not found"),
        (lambda root: str(root / "*.arc.gz"), "no file matches"),
        (lambda root: str(root / "empty"), "directory has no files"),
    ],
)
def test_local_inputs_that_name_nothing(tree, make, message):
    (tree / "empty").mkdir()
    (tree / "empty" / ".hidden").write_bytes(b"")
    item = make(tree)
    with pytest.raises(InputError, match=message) as raised:
        expand_inputs([str(tree / "top.wet.gz"), item], S3Options())
    assert item in str(raised.value)


@pytest.fixture(scope="module")
def bucket(s3_endpoint) -> S3Options:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="tokenmill-sources")
    for key in (
        "crawl-data/seg-1/warc/x.warc.gz",
        "crawl-data/seg-1/wet/x.warc.wet.gz",
        "crawl-data/seg-2/warc/y.warc.gz",
        "crawl-data/seg-10/warc/z.warc.gz",
        "crawl-data-old/w.warc.gz",
    ):
        client.put_object(Bucket="tokenmill-sources", Key=key, Body=b"x")
    manifest = gzip.compress(b"crawl-data/seg-2/warc/y.warc.gz\ncrawl-data/seg-1/warc/x.warc.gz\n")
    client.put_object(Bucket="tokenmill-sources", Key="crawl-data/warc.paths.gz", Body=manifest)
    return S3Options(endpoint_url=s3_endpoint)


def test_s3_object_prefix_and_glob(bucket):
    root = "s3://tokenmill-sources"
    assert expand_inputs([f"{root}/crawl-data/seg-2/warc/y.warc.gz"], bucket) == [
        f"{root}/crawl-data/seg-2/warc/y.warc.gz"
    ]
    # A prefix is a directory: seg-1 does not take in seg-10, crawl-data does not take in crawl-data-old.
    assert expand_inputs([f"{root}/crawl-data/seg-1"], bucket) == [
        f"{root}/crawl-data/seg-1/warc/x.warc.gz",
        f"{root}/crawl-data/seg-1/wet/x.warc.wet.gz",
    ]
    assert len(expand_inputs([f"{root}/crawl-data/"], bucket)) == 5
    assert expand_inputs([f"{root}/crawl-data/*/warc/*.warc.gz"], bucket) == [
        f"{root}/crawl-data/seg-1/warc/x.warc.gz",
        f"{root}/crawl-data/seg-10/warc/z.warc.gz",
        f"{root}/crawl-data/seg-2/warc/y.warc.gz",
    ]
    assert expand_inputs([f"{root}/crawl-data/seg-?/warc/*"], bucket) == [
        f"{root}/crawl-data/seg-1/warc/x.warc.gz",
        f"{root}/crawl-data/seg-2/warc/y.warc.gz",
    ]


def test_s3_manifest_resolves_against_a_base(bucket):
    uris = expand_inputs(
        ["s3://tokenmill-sources/crawl-data/warc.paths.gz"], bucket, cc_base="s3://tokenmill-sources/"
    )
    assert uris == [
        "s3://tokenmill-sources/crawl-data/seg-2/warc/y.warc.gz",
        "s3://tokenmill-sources/crawl-data/seg-1/warc/x.warc.gz",
    ]


@pytest.mark.parametrize(
    "item",
    [
        "s3://tokenmill-sources/crawl-data/seg-3",
        "s3://tokenmill-sources/crawl-data/*.arc.gz",
        "s3://tokenmill-sources/missing.paths",
    ],
)
def test_s3_inputs_that_name_nothing(bucket, item):
    with pytest.raises(InputError, match="tokenmill-sources"):
        expand_inputs([item], bucket)


def test_unit_names():
    assert unit_name(
        "s3://commoncrawl/crawl-data/CC-MAIN-2019-35/segments/1/warc/CC-MAIN-2019-00000.warc.gz"
    ).startswith("CC-MAIN-2019-00000-")
    assert unit_name("/data/whirlwind.warc.wet.gz").startswith("whirlwind-")
    assert unit_name("/data/sample.arc.gz").startswith("sample-")
    assert unit_name("https://host/dir/page%20one.warc.gz?x=1").startswith("page_20one-")
    assert unit_name("/data/.hidden.warc.gz").startswith("hidden-")  # Spark and pyarrow skip dot files
    name = unit_name("s3://b/weird name/ä ö (1).warc.gz")
    assert name.replace("-", "").replace("_", "").replace(".", "").isalnum() and name.isascii()
    assert unit_name("/a/x.warc.gz") != unit_name("/b/x.warc.gz")
    assert unit_name("/a/x.warc.gz") == unit_name("/a/x.warc.gz")


def test_unit_names_are_distinct_for_a_real_manifest():
    uris = expand_inputs([str(CC_PATHS)], S3Options())
    assert len({unit_name(uri) for uri in uris}) == len(uris)


def test_unit_names_are_the_same_in_another_process():
    uri = "s3://commoncrawl/crawl-data/CC-MAIN-2019-35/x.warc.gz"
    code = f"from tokenmill.pipeline.ingest.sources import unit_name; print(unit_name({uri!r}))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == unit_name(uri)
