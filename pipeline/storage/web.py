"""http(s):// URLs, read-only: Common Crawl serves every file at https://data.commoncrawl.org/<key>."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import TYPE_CHECKING, BinaryIO

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage.store import FileInfo

if TYPE_CHECKING:
    from tokenmill.pipeline.storage.s3 import S3Options

HTTP_TIMEOUT_S = 60


class HttpStore:
    """http:// and https:// URLs. There is no listing and no random access: name the files (or a
    *.paths manifest), and download a file first to read it from the end."""

    def open_input(self, uri: str, options: S3Options) -> BinaryIO:
        return urllib.request.urlopen(uri, timeout=HTTP_TIMEOUT_S)

    def open_seekable(self, uri: str, options: S3Options) -> BinaryIO:
        raise UserError(f"cannot read {uri} from random offsets over HTTP; download it or use s3://")

    def stat(self, uri: str, options: S3Options) -> FileInfo | None:
        request = urllib.request.Request(uri, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                size = int(response.headers.get("Content-Length", -1))
                version = response.headers.get("ETag") or response.headers.get("Last-Modified") or ""
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                return None
            raise
        return FileInfo(uri, size, version.strip('"'))

    def list_infos(self, prefix_uri: str, options: S3Options) -> list[FileInfo]:
        raise UserError(f"cannot list {prefix_uri}: HTTP has no listing; name files or a *.paths manifest")
