"""Local files. A write goes to a hidden temporary name in the target directory, is synced, then renamed
over the target, so a crash never leaves a partial file under the final name; the "." prefix keeps
leftovers out of Spark's and pyarrow's directory listings."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tokenmill.pipeline.storage.store import FileInfo
from tokenmill.pipeline.storage.uri import local_path

if TYPE_CHECKING:
    from tokenmill.pipeline.storage.s3 import S3Options


def _path(uri: str) -> str:
    path = local_path(uri)
    if path is None:
        raise ValueError(f"not a local path: {uri}")
    return path


def _info(path: str) -> FileInfo:
    status = os.stat(path)
    return FileInfo(path, status.st_size, str(status.st_mtime_ns))


def temp_path(path: str) -> str:
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


def commit(path: str, write: Callable[[BinaryIO], None], durable: bool = True) -> None:
    """Run write(binary_file) on a hidden temp file, sync it (when `durable`) and rename it to `path`;
    clean up on failure. The rename alone already makes the write atomic for readers and crashes of
    the process; the sync makes it survive a crash of the machine."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path(path)
    try:
        with open(temp, "xb") as handle:  # created with the umask's permissions, unlike mkstemp's 0600
            write(handle)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(os.path.dirname(path))


def publish(temp: str, path: str) -> None:
    """Sync a finished temporary file (from `temp_path`) and rename it over `path`, durably."""
    with open(temp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)
    _fsync_dir(os.path.dirname(path))


def remove_stale_temps(directory: str, prefix: str) -> int:
    """Delete the temp files that crashed writes of files named `prefix...` left in `directory`."""
    if not os.path.isdir(directory):
        return 0
    stale = [
        name for name in os.listdir(directory) if name.startswith(f".{prefix}") and name.endswith(".tmp")
    ]
    for name in stale:
        Path(directory, name).unlink(missing_ok=True)
    return len(stale)


class LocalStore:
    """Plain paths and file:// URIs."""

    def open_input(self, uri: str, options: S3Options) -> BinaryIO:
        return open(_path(uri), "rb")

    open_seekable = open_input  # a local file seeks by itself

    def stat(self, uri: str, options: S3Options) -> FileInfo | None:
        path = _path(uri)
        return _info(path) if os.path.isfile(path) else None

    def list_infos(self, prefix_uri: str, options: S3Options) -> list[FileInfo]:
        """Files under a directory, recursively, leaving out hidden "." files and directories."""
        found = []
        for directory, subdirs, files in os.walk(_path(prefix_uri)):
            subdirs[:] = [name for name in subdirs if not name.startswith(".")]
            found += [_info(os.path.join(directory, name)) for name in files if not name.startswith(".")]
        return sorted(found, key=lambda info: info.uri)

    def write_bytes(self, uri: str, data: bytes, options: S3Options) -> None:
        commit(_path(uri), lambda handle: handle.write(data))

    def write_with(
        self, uri: str, write: Callable[[BinaryIO], None], options: S3Options, durable: bool = True
    ) -> None:
        commit(_path(uri), write, durable)

    def upload_file(self, local_file: str, uri: str, options: S3Options) -> None:
        def copy(handle: BinaryIO) -> None:
            with open(local_file, "rb") as source:
                shutil.copyfileobj(source, handle, 1 << 20)

        commit(_path(uri), copy)

    def delete(self, uri: str, options: S3Options) -> None:
        Path(_path(uri)).unlink(missing_ok=True)
