"""Main-text extraction under a time bound that always holds, by the recipe's `extract.engine`:
trafilatura in FineWeb's settings (the default), or Resiliparse, an order of magnitude faster
(`bench/extraction.py` measures both; README).

The engine runs in a child process; the parent kills it when a pathological page overruns (a
signal-based timeout cannot stop time spent in lxml's or Resiliparse's C code: Resiliparse's main-content
pass is quadratic in nesting depth, 20,000 nested <div>s take 5 s). The bound is on the child's CPU time,
read from /proc, so a busy machine (two Spark tasks per two cores) does not turn slow-but-normal pages
into timeouts and results do not depend on load; a wall-clock backstop of a few times the bound
catches a child that blocks without computing.

Before each page the child clears trafilatura's process-wide duplicate cache: with `deduplicate=True`
that cache otherwise makes a page's text depend on the pages the process saw before it, i.e. on
partitioning. Repeated segments inside one page are still removed.

`favor_precision` and `deduplicate` are trafilatura's own and Resiliparse ignores them;
`include_comments` and `timeout_s` mean the same to both engines.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import time
from dataclasses import dataclass
from html import unescape
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

_STARTUP_TIMEOUT_S = 60.0
_POLL_S = 0.05
_WALL_FACTOR = 4.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc); None where /proc is not available."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


# Resiliparse's options for language-model text: the main content only, no image alt texts, form
# fields, link targets or <noscript> fallbacks, and no inserted list bullets (bench/extraction.py
# measures that choice).
RESILIPARSE_OPTIONS: dict[str, bool] = {
    "main_content": True,
    "alt_texts": False,
    "form_fields": False,
    "links": False,
    "noscript": False,
    "list_bullets": False,
}


@dataclass(frozen=True)
class ExtractSettings:
    engine: str  # one of ENGINES; the recipe checks it
    favor_precision: bool  # trafilatura only
    include_comments: bool
    deduplicate: bool  # trafilatura only
    timeout_s: float

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> ExtractSettings:
        return cls(**section)


def _trafilatura(html: str, settings: ExtractSettings) -> str | None:
    import trafilatura
    from trafilatura.deduplication import LRU_TEST

    LRU_TEST.clear()
    return trafilatura.extract(
        html,
        favor_precision=settings.favor_precision,
        include_comments=settings.include_comments,
        deduplicate=settings.deduplicate,
    )


def _resiliparse(html: str, settings: ExtractSettings) -> str | None:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, comments=settings.include_comments, **RESILIPARSE_OPTIONS).strip()


_ENGINES = {"trafilatura": _trafilatura, "resiliparse": _resiliparse}
ENGINES = tuple(_ENGINES)  # the values of the recipe's `extract.engine`


def _extract_one(html: str, settings: ExtractSettings) -> str | None:
    return _ENGINES[settings.engine](html, settings)


_WARMUP_PAGE = (
    "<html><body><article><p>"
    + "A warm-up paragraph with a few words. " * 20
    + "</p></article></body></html>"
)


def _serve(conn: Connection, settings: ExtractSettings) -> None:
    """Child loop (forked from a warm parent): one page in, (status, text) out, until the parent
    closes the pipe."""
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)  # per-page parse complaints are not news
    conn.send(("ready", None))
    while True:
        try:
            html = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", _extract_one(html, settings)))
        except Exception as exc:  # a page the engine cannot handle is a counted drop, not a crash
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:200]))


class Extractor:
    """Call with HTML; returns (text or None, status) where status is ok | timeout | error."""

    def __init__(self, settings: ExtractSettings):
        _extract_one(_WARMUP_PAGE, settings)  # loads the engine before forking: every child starts warm
        self.settings = settings
        self._context = multiprocessing.get_context("fork")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None

    def _start(self) -> Connection:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(child, self.settings), daemon=True)
        self._process.start()
        child.close()
        if not parent.poll(_STARTUP_TIMEOUT_S):
            raise RuntimeError(f"the extractor process did not start within {_STARTUP_TIMEOUT_S} s")
        parent.recv()
        self._conn = parent
        return parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None

    def _wait(self, conn: Connection) -> bool:
        """True when the child answered within its CPU budget (or, without /proc, its wall budget)."""
        assert self._process is not None and self._process.pid is not None
        pid, budget = self._process.pid, self.settings.timeout_s
        cpu_start = _cpu_seconds(pid)
        wall_limit = budget * (_WALL_FACTOR if cpu_start is not None else 1.0)
        started = time.monotonic()
        while not conn.poll(_POLL_S):
            if time.monotonic() - started > wall_limit:
                return False
            cpu = _cpu_seconds(pid) if cpu_start is not None else None
            if cpu is not None and cpu - cpu_start > budget:
                return False
        return True

    def __call__(self, html: str) -> tuple[str | None, str]:
        conn = self._conn or self._start()
        try:
            conn.send(html)
            if self._wait(conn):
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


_INVISIBLE = re.compile(
    r"<(script|style|noscript|template)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL
)
_TAG = re.compile(r"<[^>]*>")


def visible_text(html: str, max_chars: int) -> str:
    """A crude, fast (~1 ms) approximation of a page's visible text: enough to tell its language,
    never used as document text. Whitespace runs become one space (`str.split` splits where the
    regex `\\s+` would match, at a fraction of its cost)."""
    text = _TAG.sub(" ", _INVISIBLE.sub(" ", html))
    return " ".join(unescape(text).split())[:max_chars]
