"""One small API over local paths, s3:// URIs and http(s):// URLs, for inputs and outputs alike.

S3 is reached the way Common Crawl's cc-pyspark reaches it: one boto3 client per worker process, with
adaptive retries and many attempts, because S3 throttles whole clusters of readers. Requests to the
public `commoncrawl` bucket are unsigned, so no credentials are needed. An endpoint override serves
S3-compatible stores and the test server.

Writes commit atomically. A local file is written under a hidden temporary name in the target
directory, synced, then renamed. On S3 an upload becomes visible only when it finishes. A crashed
task therefore never leaves a partial file under the final name, and the "." prefix keeps leftovers
out of Spark's and pyarrow's directory listings.
"""

from __future__ import annotations

import os
import secrets
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

import boto3
import botocore
import botocore.config
from botocore.exceptions import ClientError

HTTP_TIMEOUT_S = 60
_REMOTE = ("s3://", "http://", "https://")
_PUBLIC_BUCKET = "commoncrawl"
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Options:
    """How to reach S3. It is small and picklable, because it travels to Spark executors.

    endpoint_url: an S3-compatible endpoint. None means AWS_ENDPOINT_URL if that is set, else AWS.
    unsigned: None signs requests for every bucket except Common Crawl's public one.
    """

    endpoint_url: str | None = None
    unsigned: bool | None = None

    def endpoint(self) -> str | None:
        return self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None

    def unsigned_for(self, bucket: str) -> bool:
        return self.unsigned if self.unsigned is not None else bucket == _PUBLIC_BUCKET


@cache
def _client(pid: int, endpoint: str | None, unsigned: bool) -> Any:
    """Keyed by pid as well, because a boto3 client must not be shared across fork()."""
    config = botocore.config.Config(
        retries={"max_attempts": 20, "mode": "adaptive"},
        signature_version=botocore.UNSIGNED if unsigned else None,
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)


def s3_client(options: S3Options, bucket: str) -> Any:
    """The process's boto3 S3 client for this endpoint and signing mode."""
    return _client(os.getpid(), options.endpoint(), options.unsigned_for(bucket))


def split_s3(uri: str) -> tuple[str, str]:
    """'s3://bucket/some/key' -> ('bucket', 'some/key')."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def local_path(uri: str) -> str | None:
    """The filesystem path of a local path or file:// URI, or None for a remote URI."""
    if uri.startswith("file://"):
        return urllib.request.url2pathname(urlparse(uri).path)
    return None if uri.startswith(_REMOTE) else uri


def _local_or_error(uri: str, action: str) -> str:
    path = local_path(uri)
    if path is None:
        raise ValueError(f"cannot {action} {uri}: only local paths and s3:// URIs support it")
    return path


def join(root: str, *parts: str) -> str:
    """Join path parts onto a local or remote root. Parts are always relative, even with a leading '/'."""
    parts = tuple(part.strip("/") for part in parts if part.strip("/"))
    if root.startswith((*_REMOTE, "file://")):
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(root, *parts)


def open_input(uri: str, options: S3Options) -> BinaryIO:
    """A streaming binary reader; the caller closes it (all three kinds are context managers)."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        return s3_client(options, bucket).get_object(Bucket=bucket, Key=key)["Body"]
    if uri.startswith(("http://", "https://")):
        return urllib.request.urlopen(uri, timeout=HTTP_TIMEOUT_S)
    return open(_local_or_error(uri, "open"), "rb")


def read_bytes(uri: str, options: S3Options) -> bytes:
    with open_input(uri, options) as stream:
        return stream.read()


def exists(uri: str, options: S3Options) -> bool:
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        try:
            s3_client(options, bucket).head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _MISSING_CODES:
                return False
            raise
        return True
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(urllib.request.Request(uri, method="HEAD"), timeout=HTTP_TIMEOUT_S):
                return True
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                return False
            raise
    return os.path.exists(_local_or_error(uri, "check"))


def list_files(prefix_uri: str, options: S3Options) -> list[str]:
    """Sorted files under a local directory (recursive, hidden "." files left out), or sorted keys that
    start with an S3 prefix. A missing directory or an unmatched prefix gives []."""
    if prefix_uri.startswith("s3://"):
        bucket, prefix = split_s3(prefix_uri)
        paginator = s3_client(options, bucket).get_paginator("list_objects_v2")
        keys = [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
            if not item["Key"].endswith("/")  # "directory" placeholder objects
        ]
        return sorted(f"s3://{bucket}/{key}" for key in keys)
    root = _local_or_error(prefix_uri, "list")
    found = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = [name for name in subdirs if not name.startswith(".")]
        found += [os.path.join(directory, name) for name in files if not name.startswith(".")]
    return sorted(found)


def _temp_path(path: str) -> str:
    """A hidden name beside the target, so the rename stays on one filesystem."""
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")


def _fsync_dir(directory: str) -> None:
    """Make a rename durable. Some filesystems cannot open a directory for this; they skip it."""
    try:
        handle = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _commit_local(path: str, write: Any) -> None:
    """Run write(binary_file) on a hidden temp file, sync it and rename it to `path`; clean up on failure."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_path(path)
    try:
        with open(temp, "xb") as handle:  # created with the umask's permissions, unlike mkstemp's 0600
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(os.path.dirname(path))


def write_atomic(uri: str, data: bytes, options: S3Options) -> None:
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        s3_client(options, bucket).put_object(Bucket=bucket, Key=key, Body=data)
        return
    _commit_local(_local_or_error(uri, "write"), lambda handle: handle.write(data))


def upload_file_atomic(local_file: str, uri: str, options: S3Options) -> None:
    """Copy a finished local file to `uri`. The source is left in place."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        s3_client(options, bucket).upload_file(local_file, bucket, key)
        return

    def copy(handle: BinaryIO) -> None:
        with open(local_file, "rb") as source:
            shutil.copyfileobj(source, handle, 1 << 20)

    _commit_local(_local_or_error(uri, "write"), copy)


def delete(uri: str, options: S3Options) -> None:
    """Remove a file or object. A missing one is not an error, so the call can be repeated."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        s3_client(options, bucket).delete_object(Bucket=bucket, Key=key)
        return
    Path(_local_or_error(uri, "delete")).unlink(missing_ok=True)


def remove_stale_temps(dir_uri: str, prefix: str) -> int:
    """Delete the temp files that a crashed write of files named `prefix...` left in a local directory.

    Returns how many were removed. S3 has no such leftovers: an unfinished upload is never visible.
    """
    directory = local_path(dir_uri)
    if directory is None or not os.path.isdir(directory):
        return 0
    stale = [
        name for name in os.listdir(directory) if name.startswith(f".{prefix}") and name.endswith(".tmp")
    ]
    for name in stale:
        Path(directory, name).unlink(missing_ok=True)
    return len(stale)
