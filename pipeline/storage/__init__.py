"""One small API over local paths, s3:// URIs and http(s):// URLs, for inputs and outputs alike.

Each function dispatches on the URI's scheme to a store: `local` (plain paths and file://), `s3` (and
S3-compatible endpoints) and `web` (http(s), read-only). Adding another object store (gs://, az://) is one
module with a class implementing `Store` (and `WritableStore` to write) plus one line in STORES.

S3 is reached the way Common Crawl's cc-pyspark reaches it: one boto3 client per worker process, keyed
by pid, with adaptive retries and many attempts, because S3 throttles whole clusters of readers.
Requests to the public `commoncrawl` bucket are unsigned, so no credentials are needed. The endpoint
comes from S3Options or AWS_ENDPOINT_URL, for S3-compatible stores and the test server.

Writes commit atomically. A local file is written under a hidden temporary name in the target
directory, synced, then renamed. On S3 an upload becomes visible only when it finishes. A crashed
task therefore never leaves a partial file under the final name, and the "." prefix keeps leftovers
out of Spark's and pyarrow's directory listings.

Everything here runs in plain Python, on the driver or inside tasks, so no stage depends on the
cluster having a Hadoop S3 connector.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import BinaryIO

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import local
from tokenmill.pipeline.storage.local import LocalStore
from tokenmill.pipeline.storage.resume import IncompleteReadError, SourceChangedError
from tokenmill.pipeline.storage.s3 import S3Options, S3Store, s3_client
from tokenmill.pipeline.storage.staged import StagedFile
from tokenmill.pipeline.storage.store import FileInfo, Store, WritableStore
from tokenmill.pipeline.storage.uri import directory_prefix, join, local_path, scheme, split_s3
from tokenmill.pipeline.storage.web import HttpStore

__all__ = [
    "FileInfo",
    "IncompleteReadError",
    "S3Options",
    "STORES",
    "StagedFile",
    "SourceChangedError",
    "Store",
    "WritableStore",
    "content_fingerprint",
    "delete",
    "directory_prefix",
    "exists",
    "join",
    "list_files",
    "list_infos",
    "local_path",
    "open_input",
    "open_seekable",
    "read_bytes",
    "remove_stale_temps",
    "s3_client",
    "scheme",
    "split_s3",
    "stat",
    "store_for",
    "upload_file_atomic",
    "write_atomic",
    "write_with",
]

STORES: dict[str, Store] = {
    "file": LocalStore(),
    "s3": S3Store(),
    "http": HttpStore(),
    "https": HttpStore(),
}


def store_for(uri: str) -> Store:
    """The store that serves `uri`'s scheme."""
    store = STORES.get(scheme(uri))
    if store is None:
        known = ", ".join(f"{name}://" for name in STORES)
        raise UserError(f"cannot reach {uri}: tokenmill reads local paths and {known} URIs")
    return store


def _writable(uri: str, action: str) -> WritableStore:
    store = store_for(uri)
    if not isinstance(store, WritableStore):
        raise UserError(f"cannot {action} {uri}: only local paths and s3:// URIs support it")
    return store


def open_input(uri: str, options: S3Options) -> BinaryIO:
    """A streaming binary reader; the caller closes it (every kind is a context manager).

    Remote reads deliver every byte their server promised or raise `IncompleteReadError` (after ranged
    retries from the byte reached) or `SourceChangedError`: an empty read is the end of the file itself.
    """
    return store_for(uri).open_input(uri, options)


def open_seekable(uri: str, s3: S3Options) -> BinaryIO:
    """A binary reader that can seek, for formats read from the end such as Parquet. On S3 it reads
    through ranged GETs behind an 8 MiB buffer, so only the parts read are fetched."""
    return store_for(uri).open_seekable(uri, s3)


def read_bytes(uri: str, options: S3Options) -> bytes:
    with open_input(uri, options) as stream:
        return stream.read()


def stat(uri: str, s3: S3Options) -> FileInfo:
    """Size and version of one file or object; FileNotFoundError if there is none."""
    info = store_for(uri).stat(uri, s3)
    if info is None:
        raise FileNotFoundError(uri)
    return info


def exists(uri: str, options: S3Options) -> bool:
    """Whether a file or object is at `uri` (a directory is not a file)."""
    return store_for(uri).stat(uri, options) is not None


def list_infos(prefix_uri: str, s3: S3Options) -> list[FileInfo]:
    """Like list_files, with each file's size and version."""
    return store_for(prefix_uri).list_infos(prefix_uri, s3)


def list_files(prefix_uri: str, options: S3Options) -> list[str]:
    """Sorted files under a local directory (recursive, hidden "." files left out), or sorted keys that
    start with an S3 prefix. A missing directory or an unmatched prefix gives []."""
    return [info.uri for info in list_infos(prefix_uri, options)]


def _is_visible(relative_name: str) -> bool:
    return not any(part.startswith(".") for part in relative_name.split("/"))


def content_fingerprint(uri: str, s3: S3Options) -> str:
    """sha256 over (relative name, size, version) of the file at `uri`, or of every visible file under
    it as a directory or prefix, so that rewriting, adding or removing any input changes it. A missing
    input gives the fingerprint of an empty directory."""
    uri = local_path(uri) or uri
    single = store_for(uri).stat(uri, s3)
    if single is not None:
        infos = [(uri.rstrip("/").rsplit("/", 1)[-1], single.size, single.version)]
    else:
        prefix = directory_prefix(uri)
        listed = ((info.uri[len(prefix) :], info) for info in list_infos(prefix, s3))
        infos = [(name, info.size, info.version) for name, info in listed if _is_visible(name)]
    return hashlib.sha256(json.dumps(infos, separators=(",", ":")).encode()).hexdigest()


def write_atomic(uri: str, data: bytes, options: S3Options) -> None:
    _writable(uri, "write").write_bytes(uri, data, options)


def write_with(uri: str, write: Callable[[BinaryIO], None], s3: S3Options, durable: bool = True) -> None:
    """Run write(binary_file) and commit what it wrote to `uri` atomically, for writers that stream
    (Parquet) rather than hand over bytes. `durable=False` skips the local disk sync, for scratch files
    a crash makes the job recompute anyway (an S3 object is durable once written)."""
    _writable(uri, "write").write_with(uri, write, s3, durable)


def upload_file_atomic(local_file: str, uri: str, options: S3Options) -> None:
    """Copy a finished local file to `uri`. The source is left in place."""
    _writable(uri, "write").upload_file(local_file, uri, options)


def delete(uri: str, options: S3Options) -> None:
    """Remove a file or object. A missing one is not an error, so the call can be repeated."""
    _writable(uri, "delete").delete(uri, options)


def remove_stale_temps(dir_uri: str, prefix: str) -> int:
    """Delete the temp files that a crashed write of files named `prefix...` left in a local directory.

    Returns how many were removed. S3 has no such leftovers: an unfinished upload is never visible.
    """
    directory = local_path(dir_uri)
    return 0 if directory is None else local.remove_stale_temps(directory, prefix)
