"""What one kind of storage (a URI scheme) implements. Adding an object store is one module with a class
that has these methods, plus one line in the registry of `tokenmill.pipeline.storage`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol, runtime_checkable

if TYPE_CHECKING:
    from tokenmill.pipeline.storage.s3 import S3Options


@dataclass(frozen=True)
class FileInfo:
    """A file as listed. `version` changes whenever the file is rewritten: the S3 ETag, or the local
    modification time in nanoseconds."""

    uri: str
    size: int
    version: str


class Store(Protocol):
    """Reading. `options` says how to reach S3; stores that need no settings ignore it."""

    def open_input(self, uri: str, options: S3Options) -> BinaryIO:
        """A streaming binary reader."""
        ...

    def open_seekable(self, uri: str, options: S3Options) -> BinaryIO:
        """A binary reader with seek(), for formats read from the end (Parquet)."""
        ...

    def stat(self, uri: str, options: S3Options) -> FileInfo | None:
        """The file or object at `uri`, or None if there is none."""
        ...

    def list_infos(self, prefix_uri: str, options: S3Options) -> list[FileInfo]:
        """The files under a prefix, sorted by URI; [] when nothing matches."""
        ...


@runtime_checkable
class WritableStore(Store, Protocol):
    """Writing. Every write commits atomically: readers see the old file or the whole new one."""

    def write_bytes(self, uri: str, data: bytes, options: S3Options) -> None: ...

    def write_with(
        self, uri: str, write: Callable[[BinaryIO], None], options: S3Options, durable: bool = True
    ) -> None:
        """Run write(binary_file) and commit what it wrote to `uri` (synced to disk when `durable`)."""
        ...

    def upload_file(self, local_file: str, uri: str, options: S3Options) -> None:
        """Copy a finished local file to `uri`, leaving the source in place."""
        ...

    def delete(self, uri: str, options: S3Options) -> None:
        """Remove a file; a missing one is not an error."""
        ...
