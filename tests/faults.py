"""Real network faults for tests: an HTTP proxy on 127.0.0.1 that misbehaves on purpose, and a static
file server that answers ranged requests the way S3 and Common Crawl's HTTPS server do.

    with FaultProxy(s3_endpoint, Fault("cut", fraction=0.5, path=r"\\.warc\\.gz")) as proxy:
        run_something(endpoint=proxy.url)
    assert proxy.injected["cut"] > 0

A `Fault` selects requests (by method and a regex on the request target) and hits a share of them,
spread evenly in arrival order (`fraction`), or exactly the first N (`first`): no randomness, so a test
sees the same number of faults on every run. Kinds:

* "cut": the upstream's status and headers with the full Content-Length, then half the body, then the
  connection is closed: a connection that drops mid-response.
* "throttle": 503 with S3's `SlowDown` XML error body; the upstream is not asked.
* "delay": wait `seconds`, then forward normally (for read timeouts).

The proxy is bounded: it shuts itself down after `max_requests` requests or `lifetime_s` seconds, so a
client that retries forever fails instead of hanging the test run.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import math
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import pytest

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>FAULTPROXY</RequestId></Error>"
)
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass(frozen=True)
class Fault:
    """One kind of misbehaviour and the requests it hits.

    fraction: the share of matching requests hit, spread evenly in arrival order: 0.5 hits the 2nd, 4th,
        6th ... matching request, 0.2 every 5th, 1.0 all of them.
    first: instead (or as well), the first N matching requests.
    methods, path: a request matches when its method is listed and `path` (a regex) is found in its
        target (path and query); the empty pattern matches every target.
    seconds: how long a "delay" waits.
    """

    kind: Literal["cut", "throttle", "delay"]
    fraction: float = 0.0
    first: int = 0
    methods: tuple[str, ...] = ("GET",)
    path: str = ""
    seconds: float = 0.0

    def matches(self, method: str, target: str) -> bool:
        return method in self.methods and re.search(self.path, target) is not None

    def hits(self, matched: int) -> bool:
        """Whether the `matched`-th matching request (counting from 1) gets this fault."""
        spread = math.floor(matched * self.fraction + 1e-9) > math.floor((matched - 1) * self.fraction + 1e-9)
        return matched <= self.first or spread


class FaultProxy:
    """Forwards every request to `upstream` (an http:// base URL) and applies the first fault that hits:
    a later fault counts only the requests the earlier ones let through.

    `url` is the proxy's base URL; `requests` counts the requests it received and `injected` the faults
    applied, by kind. Use it as a context manager, or call `close()`.
    """

    def __init__(
        self, upstream: str, *faults: Fault, max_requests: int = 5000, lifetime_s: float = 300.0
    ) -> None:
        self.upstream, self.faults, self.max_requests = urlparse(upstream), faults, max_requests
        self.requests = 0
        self.injected: Counter[str] = Counter()
        self._matched = [0] * len(faults)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.daemon_threads = True
        self._server.proxy = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self._timer = threading.Timer(lifetime_s, self.close)
        self._timer.daemon = True
        self._timer.start()
        self._closed = False

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving; callable from any thread, more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def decide(self, method: str, target: str) -> Fault | None | Literal["over"]:
        """The fault for the next request, None to forward it untouched, or "over" past max_requests."""
        with self._lock:
            self.requests += 1
            if self.requests > self.max_requests:
                return "over"
            for index, fault in enumerate(self.faults):
                if fault.matches(method, target):
                    self._matched[index] += 1
                    if fault.hits(self._matched[index]):
                        self.injected[fault.kind] += 1
                        return fault
            return None


class _ProxyHandler(BaseHTTPRequestHandler):
    """HTTP/1.0: one request per connection, so a cut is the end of the connection, as on the wire."""

    server: ThreadingHTTPServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        proxy: FaultProxy = self.server.proxy  # type: ignore[attr-defined]
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.send_response_only(100)  # else botocore waits a second before it sends a PUT's body
            self.end_headers()
        request_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = proxy.decide(self.command, self.path)
        if fault == "over":
            threading.Thread(target=proxy.close, daemon=True).start()
            self.close_connection = True
            return
        if fault is not None and fault.kind == "throttle":
            self._answer(503, [("Content-Type", "application/xml")], SLOW_DOWN, len(SLOW_DOWN))
            return
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        connection = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=60)
        try:
            connection.request(self.command, self.path, request_body, dict(self.headers))
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        headers = [(name, value) for name, value in response.getheaders() if name.lower() not in _HOP_BY_HOP]
        length = int(response.headers.get("Content-Length", len(body)))
        if fault is not None and fault.kind == "cut":
            body = body[: len(body) // 2]
        self._answer(response.status, headers, body, length)

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, length: int) -> None:
        """Send `length` as the Content-Length whatever `body` holds: shorter is a cut."""
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True


class _RangeFileHandler(SimpleHTTPRequestHandler):
    """Static files with an ETag, Last-Modified and `Range: bytes=N-` (honoured only while `If-Range`,
    when sent, still names the file's ETag), the subset of RFC 9110 a resuming reader needs."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data, stat = path.read_bytes(), path.stat()
        etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        start = int(wanted[1]) if wanted and self.headers.get("If-Range", etag) == etag else 0
        if start >= len(data) > 0:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(stat.st_mtime, usegmt=True))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data[start:])

    do_HEAD = do_GET


@contextmanager
def serving(server: ThreadingHTTPServer) -> Iterator[str]:
    """Run `server` on a daemon thread; yields its base URL (no trailing /) and shuts it down after."""
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_files(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 with ranged GETs; yields the base URL (no trailing /)."""
    handler = functools.partial(_RangeFileHandler, directory=str(directory))
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), handler)) as url:
        yield url


def wait_for(
    condition: Callable[[], bool], process: subprocess.Popen, what: str, log: Path | None = None
) -> None:
    """Poll `condition` while the real `tokenmill` process runs (a kill test's trigger); fail, with the
    end of its log, if the process ends first or nothing happens within 5 minutes."""
    deadline = time.monotonic() + 300
    while not condition():
        if process.poll() is not None:
            tail = log.read_text()[-3000:] if log is not None else ""
            pytest.fail(f"the process ended (rc {process.returncode}) before {what}\n{tail}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)
