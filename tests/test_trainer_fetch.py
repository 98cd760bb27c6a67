"""Token sets on S3 (the moto server over HTTP) fetched into a per-node cache: byte-identical copies that
the loader reads like the local set, nothing fetched twice, corrupt objects refused, one fetch per node
when several processes start at once, and a new version of the set fetching only what changed."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import multiprocessing
import os
import threading
import uuid
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.trainer_data import random_documents, write_token_set
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options
from tokenmill.tokenizer.shards import read_shard
from tokenmill.trainer.data import PackedWindows, RankBatches, ShardDocuments, open_token_set
from tokenmill.trainer.fetch import cache_dir_for, fetch_token_set, local_token_dir

VOCAB, EOT, SEQ = 500, 499, 16


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _as_tokenize_writes_it(root: Path) -> Path:
    """Complete a test token set the way `tokenmill tokenize` writes one: a `.parquet` beside each shard
    and the sha256 of all three files in the manifest."""
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in manifest["shards"]:
        name = entry["bin"].removesuffix(".bin")
        tokens = read_shard(root / entry["bin"])
        pq.write_table(pa.table({"id": [name], "tokens": [tokens.tolist()]}), root / f"{name}.parquet")
        entry["parquet"] = f"{name}.parquet"
        entry["sha256"] = {kind: _sha256(root / entry[kind]) for kind in ("bin", "idx", "parquet")}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return root


def _token_set(root: Path, val_seed: int = 2) -> Path:
    train = random_documents(50, VOCAB, EOT, seed=1, lengths=(2, 60))
    val = random_documents(10, VOCAB, EOT, seed=val_seed, lengths=(2, 60))
    return _as_tokenize_writes_it(write_token_set(root, train, val, VOCAB, EOT, shard_tokens=300))


class Bucket:
    """A fresh bucket on the moto server, reached with a plain boto3 client like any S3 endpoint."""

    def __init__(self, endpoint: str) -> None:
        self.client = boto3.client("s3", endpoint_url=endpoint)
        self.name = f"tokens-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=self.name)

    def upload(self, directory: Path, prefix: str) -> str:
        for path in sorted(directory.iterdir()):
            self.client.upload_file(str(path), self.name, f"{prefix}/{path.name}")
        return f"s3://{self.name}/{prefix}"

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)


@pytest.fixture()
def s3(s3_endpoint: str) -> S3Options:
    return S3Options(endpoint_url=s3_endpoint)


@pytest.fixture()
def bucket(s3_endpoint: str) -> Bucket:
    return Bucket(s3_endpoint)


@pytest.fixture()
def local_set(tmp_path: Path) -> Path:
    return _token_set(tmp_path / "local" / "tokens" / "test")


@pytest.fixture()
def uri(bucket: Bucket, local_set: Path) -> str:
    return bucket.upload(local_set, "run/tokens/test")


def _fetched_names(local_set: Path) -> list[str]:
    manifest = json.loads((local_set / "manifest.json").read_text())
    return sorted(entry[kind] for entry in manifest["shards"] for kind in ("bin", "idx"))


def _visible_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if not path.name.startswith("."))


def test_a_local_directory_is_used_where_it_is(local_set: Path, tmp_path: Path, s3: S3Options) -> None:
    assert local_token_dir(str(local_set), s3, tmp_path / "cache") == local_set
    assert local_token_dir(local_set.as_uri(), s3, tmp_path / "cache") == local_set
    assert not (tmp_path / "cache").exists()
    with pytest.raises(UserError, match=r"has no manifest.json: --data is ROOT/tokens/<tokenizer>"):
        local_token_dir(str(tmp_path), s3)


def test_bin_and_idx_are_fetched_byte_for_byte_and_parquet_is_not(
    uri: str, local_set: Path, tmp_path: Path, s3: S3Options
) -> None:
    cached = local_token_dir(uri, s3, tmp_path / "cache")
    assert cached == cache_dir_for(uri, tmp_path / "cache")
    assert cached.parent == tmp_path / "cache" / "tokens"
    assert _visible_files(cached) == sorted([*_fetched_names(local_set), "manifest.json"])
    for name in _visible_files(cached):
        assert (cached / name).read_bytes() == (local_set / name).read_bytes(), name
    assert not list(cached.glob("*.tmp")) and not list(cached.glob(".*.tmp"))


def test_the_cache_directory_comes_from_the_uri_and_tokenmill_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOKENMILL_CACHE", str(tmp_path))
    first = cache_dir_for("s3://bucket/a/tokens/gpt2")
    assert first.parent == tmp_path / "tokens" and len(first.name) == 16
    assert cache_dir_for("s3://bucket/a/tokens/gpt2/") == first
    assert cache_dir_for("s3://bucket/b/tokens/gpt2") != first
    monkeypatch.delenv("TOKENMILL_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        cache_dir_for("s3://bucket/a/tokens/gpt2") == tmp_path / "home/.cache/tokenmill/tokens" / first.name
    )


def test_the_loader_reads_the_same_batches_from_the_cache(
    uri: str, local_set: Path, tmp_path: Path, s3: S3Options
) -> None:
    def batches(root: Path) -> list[np.ndarray]:
        token_set = open_token_set(root)
        train = PackedWindows(ShardDocuments(token_set.train), SEQ, split=True, wrap=True, lookahead=64)
        loader = RankBatches(train, 4, 0, 1)
        val = PackedWindows(ShardDocuments((token_set.val,)), SEQ, split=True, wrap=False, lookahead=64)
        return [np.concatenate(loader.next_batch(), axis=1) for _ in range(30)] + [
            val.next_window() for _ in range(5)
        ]

    from_cache = batches(local_token_dir(uri, s3, tmp_path / "cache"))
    for cached, local in zip(from_cache, batches(local_set), strict=True):
        np.testing.assert_array_equal(cached, local)


def test_a_second_call_fetches_nothing(uri: str, tmp_path: Path, s3: S3Options) -> None:
    directory = cache_dir_for(uri, tmp_path / "cache")
    assert fetch_token_set(uri, directory, s3) != []
    stamps = {name: (directory / name).stat().st_mtime_ns for name in _visible_files(directory)}
    assert fetch_token_set(uri, directory, s3) == []
    assert local_token_dir(uri, s3, tmp_path / "cache") == directory
    assert {name: (directory / name).stat().st_mtime_ns for name in _visible_files(directory)} == stamps


def test_verified_files_are_trusted_while_their_size_and_mtime_hold(
    uri: str, tmp_path: Path, s3: S3Options
) -> None:
    """Cached shards are hashed once, not at every start: a change that keeps a file's size and mtime
    goes unseen (the price of not reading multi-GB shards again), and a lost state file costs one
    hashing pass, not a download."""
    directory = cache_dir_for(uri, tmp_path / "cache")
    fetch_token_set(uri, directory, s3)
    shard = directory / "train_000002.bin"
    stat, original = shard.stat(), shard.read_bytes()
    shard.write_bytes(original[:-2] + b"\0\0")
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert fetch_token_set(uri, directory, s3) == []
    (directory / ".verified.json").unlink()
    assert fetch_token_set(uri, directory, s3) == ["train_000002.bin"]
    assert shard.read_bytes() == original
    (directory / ".verified.json").unlink()
    assert fetch_token_set(uri, directory, s3) == []
    assert json.loads((directory / ".verified.json").read_text())["source"] == uri


def test_a_cached_file_changed_on_disk_is_fetched_again(uri: str, tmp_path: Path, s3: S3Options) -> None:
    directory = cache_dir_for(uri, tmp_path / "cache")
    fetch_token_set(uri, directory, s3)
    original = (directory / "train_000002.bin").read_bytes()
    (directory / "train_000002.bin").write_bytes(original[:-2] + b"\0\0")
    assert fetch_token_set(uri, directory, s3) == ["train_000002.bin"]
    assert (directory / "train_000002.bin").read_bytes() == original


def test_a_corrupt_object_is_refused_and_leaves_no_file_under_its_name(
    uri: str, bucket: Bucket, local_set: Path, tmp_path: Path, s3: S3Options
) -> None:
    original = (local_set / "train_000003.bin").read_bytes()
    bucket.put("run/tokens/test/train_000003.bin", original[:-2] + b"\x07\x00")
    directory = cache_dir_for(uri, tmp_path / "cache")
    with pytest.raises(UserError, match=r"train_000003\.bin: sha256 \w+ is not the manifest's"):
        fetch_token_set(uri, directory, s3)
    assert not (directory / "train_000003.bin").exists()
    assert not (directory / "manifest.json").exists()  # the cache is not complete
    assert not [path for path in directory.iterdir() if path.name.endswith(".tmp")]

    bucket.put("run/tokens/test/train_000003.bin", original)
    assert "train_000003.bin" in fetch_token_set(uri, directory, s3)
    assert (directory / "train_000003.bin").read_bytes() == original
    assert (directory / "manifest.json").is_file()


def test_an_http_server_serves_a_token_set_too(local_set: Path, tmp_path: Path, s3: S3Options) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(local_set))
    handler.log_message = lambda *args: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            cached = local_token_dir(f"http://127.0.0.1:{server.server_port}/", s3, tmp_path / "cache")
        finally:
            server.shutdown()
    assert _visible_files(cached) == sorted([*_fetched_names(local_set), "manifest.json"])
    for name in _visible_files(cached):
        assert (cached / name).read_bytes() == (local_set / name).read_bytes(), name


def test_a_missing_manifest_is_a_user_error(bucket: Bucket, tmp_path: Path, s3: S3Options) -> None:
    bucket.put("run/tokens/test/train_000001.bin", b"not a token set")
    with pytest.raises(UserError, match=r"no manifest.json under s3://.*/run/tokens/test: --data is ROOT"):
        local_token_dir(f"s3://{bucket.name}/run/tokens/test", s3, tmp_path / "cache")


def test_a_new_version_fetches_only_the_changed_shards(
    uri: str, bucket: Bucket, tmp_path: Path, s3: S3Options
) -> None:
    directory = cache_dir_for(uri, tmp_path / "cache")
    fetch_token_set(uri, directory, s3)
    # The same train documents with other validation documents: only shard 0's files differ.
    changed = _token_set(tmp_path / "changed", val_seed=3)
    for path in changed.iterdir():
        if path.name.startswith("val_") or path.name == "manifest.json":
            bucket.put(f"run/tokens/test/{path.name}", path.read_bytes())
    assert sorted(fetch_token_set(uri, directory, s3)) == ["val_000000.bin", "val_000000.idx"]
    for name in _visible_files(directory):
        assert (directory / name).read_bytes() == (changed / name).read_bytes(), name


def _fetch_in_another_process(uri: str, directory: Path, endpoint: str, start, results) -> None:
    """Puts the names it downloaded, or its error as a string, so a failure shows in the test."""
    start.wait()
    try:
        results.put(fetch_token_set(uri, directory, S3Options(endpoint_url=endpoint), threads=1))
    except Exception as exc:
        results.put(repr(exc))


def test_processes_started_at_once_fetch_each_file_once(
    uri: str, local_set: Path, tmp_path: Path, s3_endpoint: str
) -> None:
    context = multiprocessing.get_context("spawn")
    directory = cache_dir_for(uri, tmp_path / "cache")
    start, results = context.Barrier(3), context.Queue()
    processes = [
        context.Process(target=_fetch_in_another_process, args=(uri, directory, s3_endpoint, start, results))
        for _ in range(3)
    ]
    for process in processes:
        process.start()
    downloaded = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert all(isinstance(names, list) for names in downloaded), downloaded
    assert sorted(name for names in downloaded for name in names) == _fetched_names(local_set)
    assert sorted(len(names) > 0 for names in downloaded) == [False, False, True]
    assert open_token_set(directory).train[0].parent == directory
