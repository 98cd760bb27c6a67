"""Main-text extraction with trafilatura in FineWeb's settings, under a time bound that always holds.

trafilatura runs in a child process; the parent waits at most `timeout_s` for each page and kills the
child when a pathological page overruns (a signal-based timeout cannot stop time spent in lxml's C
code). Before each page the child clears trafilatura's process-wide duplicate cache: with
`deduplicate=True` that cache otherwise makes a page's text depend on the pages the process saw
before it, i.e. on partitioning. Repeated segments inside one page are still removed.
"""

from __future__ import annotations

import logging
import multiprocessing
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtractSettings:
    favor_precision: bool
    include_comments: bool
    deduplicate: bool
    timeout_s: float

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> ExtractSettings:
        return cls(**section)


def _extract_one(html: str, settings: ExtractSettings) -> str | None:
    import trafilatura
    from trafilatura.deduplication import LRU_TEST

    LRU_TEST.clear()
    return trafilatura.extract(
        html,
        favor_precision=settings.favor_precision,
        include_comments=settings.include_comments,
        deduplicate=settings.deduplicate,
    )


def _serve(conn: Connection, settings: ExtractSettings) -> None:
    """Child loop: one page in, (status, text) out, until the parent closes the pipe."""
    while True:
        try:
            html = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", _extract_one(html, settings)))
        except Exception as exc:  # a page trafilatura cannot handle is a counted drop, not a crash
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:200]))


class Extractor:
    """Call with HTML; returns (text or None, status) where status is ok | timeout | error."""

    def __init__(self, settings: ExtractSettings):
        import trafilatura  # noqa: F401  (imported before forking, so each child starts warm)

        self.settings = settings
        self._context = multiprocessing.get_context("fork")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> Connection:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child, self.settings), daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        return parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None

    def __call__(self, html: str) -> tuple[str | None, str]:
        conn = self._conn or self._start()
        try:
            conn.send(html)
            if conn.poll(self.settings.timeout_s):
                status, payload = conn.recv()
                return (payload, "ok") if status == "ok" else (None, "error")
        except (EOFError, OSError, BrokenPipeError) as exc:  # the child died (e.g. out of memory)
            log.warning("extractor process died: %s", exc)
            self._kill()
            return None, "error"
        self._kill()
        return None, "timeout"

    def close(self) -> None:
        self._kill()
