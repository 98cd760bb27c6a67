"""http(s):// URLs, read-only: Common Crawl serves every file at https://data.commoncrawl.org/<key>."""

from __future__ import annotations

import base64
import http.client
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, BinaryIO

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage.resume import Request, Response, ResumingReader, range_start
from tokenmill.pipeline.storage.store import FileInfo
from tokenmill.pipeline.storage.uri import split_userinfo

if TYPE_CHECKING:
    from tokenmill.pipeline.storage.s3 import S3Options

HTTP_TIMEOUT_S = 60


def _transient(error: BaseException) -> bool:
    """Throttling, server errors and connections that failed, reset or timed out; a 4xx is final."""
    if isinstance(error, urllib.error.HTTPError):
        return error.code == 429 or error.code >= 500
    return isinstance(
        error, (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError)
    )


def _request(
    uri: str, headers: dict[str, str] | None = None, method: str | None = None
) -> urllib.request.Request:
    """A request for `uri`. urllib cannot send a URL's userinfo (`https://user:password@host/...`): it goes
    in a Basic Authorization header instead, one that a redirect does not pass on to another host."""
    url, userinfo = split_userinfo(uri)
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    if userinfo is not None:
        credentials = base64.b64encode(userinfo.encode()).decode("ascii")
        request.add_unredirected_header("Authorization", f"Basic {credentials}")
    return request


def _url_request(uri: str) -> Request:
    """GETs of the bytes from an offset on: `Range` with `If-Range` naming the first answer's ETag or
    Last-Modified, so a server whose file changed answers with the whole new file (a version mismatch)."""

    def request(offset: int, version: str | None) -> Response:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        if offset and version:
            headers["If-Range"] = version
        response = urllib.request.urlopen(_request(uri, headers), timeout=HTTP_TIMEOUT_S)
        length = response.headers.get("Content-Length")
        return Response(
            response,
            int(length) if length is not None else None,
            response.headers.get("ETag") or response.headers.get("Last-Modified"),
            range_start(response.headers.get("Content-Range")) if response.status == 206 else 0,
        )

    return request


class HttpStore:
    """http:// and https:// URLs. There is no listing and no random access: name the files (or a
    *.paths manifest), and download a file first to read it from the end."""

    def open_input(self, uri: str, options: S3Options) -> BinaryIO:
        """The file's bytes in order. http.client ends a cut body with b"" as if the file ended there;
        this reader knows the Content-Length and fetches the rest with ranged GETs instead."""
        return ResumingReader(uri, _url_request(uri), _transient)

    def open_seekable(self, uri: str, options: S3Options) -> BinaryIO:
        raise UserError(f"cannot read {uri} from random offsets over HTTP; download it or use s3://")

    def stat(self, uri: str, options: S3Options) -> FileInfo | None:
        request = _request(uri, method="HEAD")
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
