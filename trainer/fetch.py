"""A token set on s3:// (or any URI the storage layer opens) -> a complete local copy, once per node.

`local_token_dir(data, s3)` gives the trainer a local directory to memory-map. A local path is used as it
is. For a remote URI the `.bin` and `.idx` of every shard in its manifest.json (never the `.parquet`,
which the trainer does not read) are copied into a cache directory:

    <cache root>/tokens/<first 16 hex digits of sha256(URI)>/

where the cache root is the `cache_dir` argument, else $TOKENMILL_CACHE, else ~/.cache/tokenmill.

- Each file streams into a hidden temporary name beside its final one while its sha256 is computed;
  only a file whose hash equals the manifest's is renamed into place. A mismatch is an error naming the
  file, and nothing is left under its final name.
- manifest.json is written into the cache last, so a cache holding one is complete. A new manifest at
  the same URI (a rerun of tokenize) fetches only the files whose hash changed and deletes files the new
  manifest no longer lists.
- Cached files are hashed once: `.verified.json` records each verified file's sha256, size and mtime,
  and a file whose size and mtime still match is trusted without reading multi-GB shards again at every
  start. A file that was changed or replaced (its size or mtime differ) is hashed again.
- The local ranks of one node (torchrun's LOCAL_RANK 0..G-1) all call this at once: an exclusive
  fcntl.flock on `.lock` in the cache directory lets one of them fetch while the others wait, then find
  the complete cache and fetch nothing. Each node fills its own cache; put it on a node-local disk.
- Files download several at a time. A failed or killed fetch keeps the files it finished, so the next
  start fetches only the rest; a file cut off midway is fetched again from its start.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import (
    S3Options,
    exists,
    join,
    local_path,
    open_input,
    read_bytes,
    remove_stale_temps,
    write_atomic,
)
from tokenmill.tokenizer.shards import HEADER_BYTES, format_for_dtype
from tokenmill.trainer.data import MANIFEST_FORMAT

MANIFEST = "manifest.json"
LOCK = ".lock"
VERIFIED = ".verified.json"
CHUNK_BYTES = 8 << 20
DOWNLOAD_THREADS = 8  # one S3 stream is far slower than a GPU node's network
LAYOUT_HINT = "--data is ROOT/tokens/<tokenizer> of a finished `tokenmill tokenize`"


def local_token_dir(data: str, s3: S3Options, cache_dir: str | Path | None = None) -> Path:
    """The local directory holding the token set `data`: a local path as it is, a remote URI fetched
    into this node's cache (see the module docstring)."""
    path = local_path(data)
    if path is not None:
        if not (Path(path) / MANIFEST).is_file():
            raise UserError(f"{path} has no {MANIFEST}: {LAYOUT_HINT}")
        return Path(path)
    directory = cache_dir_for(data, cache_dir)
    fetch_token_set(data, directory, s3)
    return directory


def cache_dir_for(uri: str, cache_dir: str | Path | None = None) -> Path:
    """Where the token set at `uri` is cached: one directory per URI, under the cache root."""
    root = cache_dir or os.environ.get("TOKENMILL_CACHE") or Path.home() / ".cache" / "tokenmill"
    return Path(root).expanduser() / "tokens" / hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ShardFile:
    """One file to have in the cache: its name in the manifest, its sha256 and its size (which the
    manifest's token and document counts give, for the free-space check and the progress line)."""

    name: str
    sha256: str
    size: int


def shard_files(manifest: dict[str, Any], source: str) -> list[ShardFile]:
    """The `.bin` and `.idx` of every shard a manifest lists; `source` names the manifest in errors."""
    if manifest.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{source}: format {manifest.get('format')!r} is not {MANIFEST_FORMAT!r}")
    itemsize = format_for_dtype(manifest["dtype"]).dtype.itemsize
    files = []
    for entry in manifest["shards"]:
        sizes = {"bin": HEADER_BYTES + entry["tokens"] * itemsize, "idx": 8 * entry["documents"]}
        for kind, size in sizes.items():
            name, digest = entry[kind], entry.get("sha256", {}).get(kind)
            if Path(name).name != name or name.startswith("."):
                raise UserError(f"{source}: {name!r} is not a plain file name")
            if digest is None:
                raise UserError(f"{source} has no sha256 for {name}: rerun `tokenmill tokenize`")
            files.append(ShardFile(name, digest, size))
    return files


def fetch_token_set(uri: str, directory: Path, s3: S3Options, threads: int = DOWNLOAD_THREADS) -> list[str]:
    """Make `directory` a complete, verified copy of the token set at `uri`; returns the names of the
    files this call downloaded (none when the cache was already complete)."""
    manifest_uri = join(uri, MANIFEST)
    if not exists(manifest_uri, s3):
        raise UserError(f"no {MANIFEST} under {uri}: {LAYOUT_HINT}")
    manifest_bytes = read_bytes(manifest_uri, s3)
    wanted = shard_files(json.loads(manifest_bytes), manifest_uri)
    directory.mkdir(parents=True, exist_ok=True)
    with _node_lock(directory):
        verified = VerifiedFiles(directory, uri)
        missing = [file for file in wanted if not verified.holds(file)]
        cached_manifest = directory / MANIFEST
        if not missing and cached_manifest.is_file() and cached_manifest.read_bytes() == manifest_bytes:
            return []
        cached_manifest.unlink(missing_ok=True)  # from here until the end the cache is incomplete
        remove_stale_temps(str(directory), "")  # downloads a killed process left behind
        _remove_unlisted(directory, {file.name for file in wanted}, verified)
        for file in missing:  # a stale version must not outlive a failed download under the final name
            (directory / file.name).unlink(missing_ok=True)
        _check_free_space(directory, missing)
        _download_all(uri, directory, missing, s3, verified, threads)
        write_atomic(str(cached_manifest), manifest_bytes, s3)
    return [file.name for file in missing]


@contextmanager
def _node_lock(directory: Path) -> Iterator[None]:
    """Held by one process of the node at a time; the kernel releases it if that process dies."""
    with open(directory / LOCK, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"fetch: waiting for another process to fill {directory}", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


class VerifiedFiles:
    """The state file: the sha256 of each cached file, with the size and mtime it had when hashed."""

    def __init__(self, directory: Path, uri: str) -> None:
        self.directory, self.uri = directory, uri
        state = directory / VERIFIED
        self.files: dict[str, dict[str, Any]] = (
            json.loads(state.read_text())["files"] if state.is_file() else {}
        )

    def holds(self, file: ShardFile) -> bool:
        """Whether the cache holds `file` intact; a file not seen since it last changed is hashed now."""
        path = self.directory / file.name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False
        seen = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        known = self.files.get(file.name)
        if known is None or {key: known[key] for key in seen} != seen:
            self.record(file.name, _sha256_of(path))
        return self.files[file.name]["sha256"] == file.sha256

    def record(self, name: str, sha256: str) -> None:
        stat = (self.directory / name).stat()
        self.files[name] = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        self._save()

    def forget(self, name: str) -> None:
        if self.files.pop(name, None) is not None:
            self._save()

    def _save(self) -> None:
        state = {"source": self.uri, "files": self.files}
        write_atomic(str(self.directory / VERIFIED), json.dumps(state, indent=1).encode(), S3Options())


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _remove_unlisted(directory: Path, listed: set[str], verified: VerifiedFiles) -> None:
    """Shards of an earlier version of the token set, which the new manifest no longer lists."""
    for path in directory.iterdir():
        if not path.name.startswith(".") and path.name not in listed:
            path.unlink()
            verified.forget(path.name)


def _check_free_space(directory: Path, files: list[ShardFile]) -> None:
    needed, free = sum(file.size for file in files), shutil.disk_usage(directory).free
    if needed > free:
        raise UserError(
            f"fetching the token set needs {needed / 1e9:.1f} GB in {directory}, which has "
            f"{free / 1e9:.1f} GB free: point --cache-dir (or TOKENMILL_CACHE) at a larger disk"
        )


def _download_all(
    uri: str, directory: Path, files: list[ShardFile], s3: S3Options, verified: VerifiedFiles, threads: int
) -> None:
    """Several files at a time; each is recorded as verified as soon as it is in place."""
    if not files:
        return
    started, total = time.perf_counter(), sum(file.size for file in files)
    print(f"fetch: {len(files)} files, {total / 1e6:,.1f} MB from {uri} into {directory}", flush=True)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        try:
            for file in pool.map(lambda file: _download(uri, directory, file, s3), files):
                verified.record(file.name, file.sha256)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    seconds = time.perf_counter() - started
    print(f"fetch: done in {seconds:.1f} s ({total / 1e6 / max(seconds, 1e-9):,.1f} MB/s)", flush=True)


def _download(uri: str, directory: Path, file: ShardFile, s3: S3Options) -> ShardFile:
    """Stream one file to a hidden temporary name, hashing it; rename it into place only if it is intact."""
    source = join(uri, file.name)
    temp = directory / f".{file.name}.{secrets.token_hex(6)}.tmp"
    digest = hashlib.sha256()
    try:
        with open_input(source, s3) as stream, open(temp, "xb") as sink:
            while block := stream.read(CHUNK_BYTES):
                digest.update(block)
                sink.write(block)
            sink.flush()
            os.fsync(sink.fileno())
        if digest.hexdigest() != file.sha256:
            raise UserError(
                f"{source}: sha256 {digest.hexdigest()} is not the manifest's {file.sha256}; the object "
                "changed or is corrupt: rerun `tokenmill tokenize`"
            )
        os.replace(temp, directory / file.name)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return file
