"""S3 and S3-compatible stores, reached the way Common Crawl's cc-pyspark reaches them.

One boto3 client per worker process, with adaptive retries and many attempts, because S3 throttles
whole clusters of readers. Requests to the public `commoncrawl` bucket are unsigned, so no credentials
are needed. The endpoint comes from S3Options or AWS_ENDPOINT_URL, for S3-compatible stores and the
test server. An upload becomes visible only when it is complete, so a crashed task never leaves a
partial object under the final key.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, BinaryIO

import boto3
import botocore
import botocore.config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import IncompleteReadError as BotocoreIncompleteRead

from tokenmill.pipeline.storage.resume import (
    IncompleteReadError,
    Request,
    Response,
    ResumingReader,
    SourceChangedError,
    range_start,
)
from tokenmill.pipeline.storage.store import FileInfo
from tokenmill.pipeline.storage.uri import split_s3

_PUBLIC_BUCKET = "commoncrawl"
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
SEEKABLE_BUFFER = 8 << 20  # one ranged GET per 8 MiB read sequentially; S3 charges per request
_CUT_SHORT = (BotocoreIncompleteRead, ResponseStreamingError, ReadTimeoutError, ConnectionClosedError)


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


def _is_missing(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code") in _MISSING_CODES


def _cut_short(error: BaseException) -> bool:
    """Errors of a body that ended early, reset or timed out: worth asking again for the rest. botocore
    has already retried the request itself (throttling, 5xx) by then."""
    return isinstance(error, _CUT_SHORT)


def _object_request(client: Any, uri: str, start: int = 0, end: int | None = None) -> Request:
    """GETs of the object's bytes from `start` + offset to `end` (inclusive; None: its end). Once the
    ETag is known every GET names it (If-Match), so a rewritten object fails instead of mixing versions."""
    bucket, key = split_s3(uri)

    def request(offset: int, etag: str | None) -> Response:
        arguments: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if start + offset or end is not None:
            arguments["Range"] = f"bytes={start + offset}-{'' if end is None else end}"
        if etag is not None:
            arguments["IfMatch"] = etag
        try:
            response = client.get_object(**arguments)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                raise SourceChangedError(uri, f"its ETag is no longer {etag}") from exc
            raise
        begins = range_start(response.get("ContentRange")) - start
        return Response(response["Body"], response["ContentLength"], response["ETag"], begins)

    return request


class RangedObject(io.RawIOBase):
    """Random access to one S3 object through ranged GETs.

    Every GET names the ETag seen at open, so an object rewritten mid-read fails (SourceChangedError)
    instead of mixing two versions. A response that ends early is resumed from the byte it reached
    (`ResumingReader`): a read returns short only at the end of the object.
    """

    def __init__(self, client: Any, uri: str, size: int, etag: str) -> None:
        super().__init__()
        self._client, self._uri = client, uri
        self._size, self._etag, self._position = size, etag, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        count = max(0, min(len(view), self._size - self._position))
        if count:
            self._fill(self._position, view[:count])
        self._position += count
        return count

    def _fill(self, start: int, view: memoryview) -> None:
        request = _object_request(self._client, self._uri, start, start + len(view) - 1)
        filled = 0
        with ResumingReader(self._uri, request, _cut_short, version=self._etag) as span:
            while filled < len(view) and (count := span.readinto(view[filled:])):
                filled += count
        if filled < len(view):
            raise IncompleteReadError(
                self._uri, start + filled, self._size, "a ranged GET promised too few bytes"
            )


class S3Store:
    """s3:// URIs."""

    def open_input(self, uri: str, options: S3Options) -> BinaryIO:
        """The object's bytes in order; a body cut short is resumed with ranged GETs of the same ETag."""
        bucket, _ = split_s3(uri)
        client = s3_client(options, bucket)
        return ResumingReader(uri, _object_request(client, uri), _cut_short)

    def open_seekable(self, uri: str, options: S3Options) -> BinaryIO:
        bucket, key = split_s3(uri)
        client = s3_client(options, bucket)
        head = client.head_object(Bucket=bucket, Key=key)
        raw = RangedObject(client, uri, head["ContentLength"], head["ETag"])
        return io.BufferedReader(raw, buffer_size=SEEKABLE_BUFFER)

    def stat(self, uri: str, options: S3Options) -> FileInfo | None:
        bucket, key = split_s3(uri)
        if not key or key.endswith("/"):
            return None
        try:
            head = s3_client(options, bucket).head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return FileInfo(uri, head["ContentLength"], head["ETag"].strip('"'))

    def list_infos(self, prefix_uri: str, options: S3Options) -> list[FileInfo]:
        """Objects whose keys start with the prefix, leaving out "directory" placeholders (keys ending
        in "/"); S3 pages its listing at 1000 keys, and every page is read."""
        bucket, prefix = split_s3(prefix_uri)
        paginator = s3_client(options, bucket).get_paginator("list_objects_v2")
        found = [
            FileInfo(f"s3://{bucket}/{item['Key']}", item["Size"], item["ETag"].strip('"'))
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
            if not item["Key"].endswith("/")
        ]
        return sorted(found, key=lambda info: info.uri)

    def write_bytes(self, uri: str, data: bytes, options: S3Options) -> None:
        bucket, key = split_s3(uri)
        s3_client(options, bucket).put_object(Bucket=bucket, Key=key, Body=data)

    def write_with(
        self, uri: str, write: Callable[[BinaryIO], None], options: S3Options, durable: bool = True
    ) -> None:
        """Written to a local temp file first: S3 takes an object whole (or in multipart pieces), and
        it is durable once the upload succeeds, whatever `durable` says."""
        with tempfile.TemporaryDirectory(prefix="tokenmill-") as directory:
            staged = os.path.join(directory, "object")
            with open(staged, "wb") as handle:
                write(handle)
            self.upload_file(staged, uri, options)

    def upload_file(self, local_file: str, uri: str, options: S3Options) -> None:
        bucket, key = split_s3(uri)
        s3_client(options, bucket).upload_file(local_file, bucket, key)

    def delete(self, uri: str, options: S3Options) -> None:
        bucket, key = split_s3(uri)
        s3_client(options, bucket).delete_object(Bucket=bucket, Key=key)
