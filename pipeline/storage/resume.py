"""Remote reads that deliver every byte the server promised, or raise: never a silent short read.

A response body can end before its Content-Length when a connection drops, resets or times out, and
both botocore's raw stream and `http.client` report that as an ordinary end of data (b""). A gzip or
WARC reader cannot tell that from a file that really ends there, so a cut connection would pass for a
truncated file and its loss would be committed. `ResumingReader` keeps the length and the version
(ETag or Last-Modified) of its first response. When a body ends early or fails with an error its
store calls transient, it asks for the rest from the byte reached, pinned to that version, after an
exponential backoff. After `RESUME_ATTEMPTS` tries in a row without a byte it raises
`IncompleteReadError`; a file rewritten meanwhile raises `SourceChangedError` rather than splicing two
versions together.
"""

from __future__ import annotations

import functools
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

RESUME_ATTEMPTS = 8  # tries in a row that bring no byte before a read gives up
BACKOFF_S, MAX_BACKOFF_S = 0.1, 2.0  # wait before the n-th retry: 0.1 s doubling, at most 2 s
_CONTENT_RANGE = re.compile(r"bytes (\d+)-")

T = TypeVar("T")


class IncompleteReadError(OSError):
    """A remote file could not be read to the length its server promised. A later retry may succeed;
    the bytes read so far must not be used as if they were the whole file."""

    def __init__(self, uri: str, got: int, expected: int | None, cause: str) -> None:
        self.uri, self.got, self.expected, self.cause = uri, got, expected, cause
        total = "an unknown length" if expected is None else f"{expected:,} bytes"
        super().__init__(f"{uri}: read {got:,} of {total}, then: {cause}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.uri, self.got, self.expected, self.cause)


class SourceChangedError(OSError):
    """A remote file was rewritten while it was read: the rest belongs to another version. A rerun
    reads the new version from the start."""

    def __init__(self, uri: str, detail: str) -> None:
        self.uri, self.detail = uri, detail
        super().__init__(f"{uri} changed while it was read ({detail})")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.uri, self.detail)


@dataclass
class Response:
    """One answer to a request for a file's bytes from some offset on.

    body: has read(size) and close().  length: the bytes this answer promises (its Content-Length),
    None if it promised none.  version: the ETag or Last-Modified it names, None if none.  start: the
    offset its body begins at (from Content-Range; 0 for a whole-file answer).
    """

    body: Any
    length: int | None
    version: str | None
    start: int = 0


# request(offset, version): the bytes from `offset` on. `version` is None only for the first request;
# afterwards it is the first answer's version, which the request must pin (If-Match, If-Range).
Request = Callable[[int, str | None], Response]


def range_start(content_range: str | None) -> int:
    """The first byte of a `Content-Range: bytes N-M/T` answer; 0 for an answer without one."""
    match = _CONTENT_RANGE.match(content_range or "")
    return int(match.group(1)) if match else 0


class _EndedEarly(Exception):
    """A body ended before the length its response promised."""


class ResumingReader(io.RawIOBase):
    """A sequential reader of one remote file (or one span of it) that cannot end short.

    The first request is made at construction, so a missing file fails at open. `retryable(exc)` says
    which errors of a request or a read are transient (connection dropped, reset, timed out, 5xx).
    `version` pins even the first request, for a span of a file whose version is already known.
    """

    def __init__(
        self,
        uri: str,
        request: Request,
        retryable: Callable[[BaseException], bool],
        version: str | None = None,
    ) -> None:
        super().__init__()
        self.uri, self.version = uri, version
        self.length: int | None = None  # the promised total, known from the first answer
        self._request, self._retryable = request, retryable
        self._position = 0
        self._response: Response | None = None
        self._response = self._retrying(self._answer)
        self.length = self._response.length
        self.version = self._response.version or version

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = len(view) if self.length is None else min(len(view), self.length - self._position)
        if wanted <= 0:
            return 0
        chunk = self._retrying(functools.partial(self._read_some, wanted))
        view[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def readall(self) -> bytes:
        return b"".join(iter(functools.partial(self.read, 1 << 20), b""))

    def close(self) -> None:
        self._drop_response()
        super().close()

    def _read_some(self, size: int) -> bytes:
        if self._response is None:
            self._response = self._answer()
        chunk = self._response.body.read(size)
        if not chunk and self.length is not None:
            raise _EndedEarly(f"the response ended at byte {self._position:,}")
        return chunk

    def _answer(self) -> Response:
        """A request for the rest, checked to continue the same version at the byte reached."""
        response = self._request(self._position, self.version)
        try:
            if self.version and response.version and response.version != self.version:
                raise SourceChangedError(self.uri, f"version {self.version}, now {response.version}")
            rest = None if self.length is None else self.length - self._position
            if response.length is not None and rest is not None and response.length != rest:
                raise SourceChangedError(
                    self.uri, f"{rest:,} bytes left at byte {self._position:,}, now {response.length:,}"
                )
            if response.start != self._position:
                raise IncompleteReadError(
                    self.uri, self._position, self.length, f"the server answered from byte {response.start:,}"
                )
        except OSError:
            response.body.close()
            raise
        return response

    def _retrying(self, attempt: Callable[[], T]) -> T:
        failures = 0
        while True:
            try:
                return attempt()
            except Exception as exc:
                if not isinstance(exc, _EndedEarly) and not self._retryable(exc):
                    raise
                self._drop_response()
                failures += 1
                if failures >= RESUME_ATTEMPTS:
                    cause = (
                        f"{failures} tries in a row brought no byte; the last: {type(exc).__name__}: {exc}"
                    )
                    raise IncompleteReadError(self.uri, self._position, self.length, cause) from exc
                time.sleep(min(MAX_BACKOFF_S, BACKOFF_S * 2 ** (failures - 1)))

    def _drop_response(self) -> None:
        if self._response is not None:
            self._response.body.close()
            self._response = None
