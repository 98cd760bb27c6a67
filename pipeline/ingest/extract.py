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

Transport: a 150 KB page pickled through the pipe cost 0.3 to 1 ms of CPU (parent and child together,
with a child that only echoes), next to Resiliparse's ~2 ms of extraction. So pages and texts travel as
UTF-8 through an anonymous shared memory map created before the fork (an untouched page of it costs no
memory), and the pipe carries only small fixed headers: the page's length (and whether it holds lone
surrogates, which strict UTF-8 cannot carry) one way; the outcome, the text's length and the child's CPU
time the other. The child's CPU time at its last answer is the baseline of the next page's budget, so
/proc is read only while a page runs past the first poll. A page or a text that does not fit the map
travels inside its pipe message instead: slower, never lost. Resiliparse parses the page's UTF-8 bytes
directly (the same text as from the str).
"""

from __future__ import annotations

import logging
import mmap
import multiprocessing
import os
import re
import struct
import time
from dataclasses import dataclass
from html import unescape
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

_STARTUP_TIMEOUT_S = 60.0
_POLL_S = 0.05
_WALL_FACTOR = 4.0
# The default recipe reads bodies up to 10 MB (reader.max_payload_bytes), up to ~3x that as UTF-8 once
# decoded: such a page still fits.
BUFFER_BYTES = 32 * 1024 * 1024
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


def _trafilatura(html: str | bytes, settings: ExtractSettings) -> str | None:
    import trafilatura
    from trafilatura.deduplication import LRU_TEST

    LRU_TEST.clear()
    return trafilatura.extract(
        html.decode("utf-8") if isinstance(html, bytes) else html,
        favor_precision=settings.favor_precision,
        include_comments=settings.include_comments,
        deduplicate=settings.deduplicate,
    )


def _resiliparse(html: str | bytes, settings: ExtractSettings) -> str | None:
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.html import HTMLTree

    page = HTMLTree.parse_from_bytes(html, "utf-8") if isinstance(html, bytes) else html
    return extract_plain_text(page, comments=settings.include_comments, **RESILIPARSE_OPTIONS).strip()


_ENGINES = {"trafilatura": _trafilatura, "resiliparse": _resiliparse}
ENGINES = tuple(_ENGINES)  # the values of the recipe's `extract.engine`


def _extract_one(html: str | bytes, settings: ExtractSettings) -> str | None:
    """The engine's text of a page given as a str or as valid UTF-8 bytes."""
    return _ENGINES[settings.engine](html, settings)


_WARMUP_PAGE = (
    "<html><body><article><p>"
    + "A warm-up paragraph with a few words. " * 20
    + "</p></article></body></html>"
)


# Parent -> child: where the page is, whether it was encoded with lone surrogates, its UTF-8 length.
_REQUEST = struct.Struct("<BBQ")
# Child -> parent: the outcome, the child's CPU seconds when it answered, the length of what follows.
_REPLY = struct.Struct("<BdQ")
_IN_BUFFER, _INLINE = 0, 1  # where a page or a text is: in the shared map, or after the header
_NO_TEXT, _ERROR, _READY = 2, 3, 4  # outcomes with nothing in the map


def _encode(text: str) -> tuple[bytes, bool]:
    """UTF-8 of a str, and whether it needed `surrogatepass`: a page with a lone surrogate must reach
    the engine as that very str, not as bytes that Resiliparse would decode differently."""
    try:
        return text.encode("utf-8"), False
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass"), True


def _put(buffer: mmap.mmap, header: struct.Struct, code: int, detail: int | float, data: bytes) -> bytes:
    """The pipe message for `data` (`detail` is the header's middle field): the header alone when the
    data fits the map (written there), else the header and the data itself."""
    if len(data) <= len(buffer):
        buffer[: len(data)] = data
        return header.pack(code, detail, len(data))
    return header.pack(_INLINE, detail, len(data)) + data


def _take(buffer: mmap.mmap, message: bytes, header: struct.Struct) -> tuple[int, int | float, bytes]:
    """The inverse of `_put`: (code, detail, data)."""
    code, detail, length = header.unpack_from(message)
    data = buffer[:length] if code == _IN_BUFFER else message[header.size :]
    return code, detail, data


def _serve(conn: Connection, buffer: mmap.mmap, settings: ExtractSettings) -> None:
    """Child loop (forked from a warm parent): one page in, one outcome out, until the parent closes
    the pipe."""
    logging.getLogger("trafilatura").setLevel(logging.CRITICAL)  # per-page parse complaints are not news
    conn.send_bytes(_REPLY.pack(_READY, time.process_time(), 0))
    while True:
        try:
            message = conn.recv_bytes()
        except EOFError:
            return
        _, surrogates, page = _take(buffer, message, _REQUEST)
        try:
            text = _extract_one(page.decode("utf-8", "surrogatepass") if surrogates else page, settings)
        except Exception as exc:  # a page the engine cannot handle is a counted drop, not a crash
            reason = f"{type(exc).__name__}: {exc}"[:200].encode("utf-8", "replace")
            conn.send_bytes(_REPLY.pack(_ERROR, time.process_time(), len(reason)) + reason)
            continue
        if text is None:
            conn.send_bytes(_REPLY.pack(_NO_TEXT, time.process_time(), 0))
        else:
            encoded = text.encode("utf-8", "surrogatepass")
            conn.send_bytes(_put(buffer, _REPLY, _IN_BUFFER, time.process_time(), encoded))


class Extractor:
    """Call with HTML; returns (text or None, status) where status is ok | timeout | error.

    `buffer_bytes` sizes the shared map; a larger page or text goes through the pipe instead."""

    def __init__(self, settings: ExtractSettings, buffer_bytes: int = BUFFER_BYTES):
        _extract_one(_WARMUP_PAGE, settings)  # loads the engine before forking: every child starts warm
        self.settings = settings
        self._buffer = mmap.mmap(-1, buffer_bytes)  # anonymous and shared with every forked child
        self._context = multiprocessing.get_context("fork")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._child_cpu = 0.0  # the child's CPU seconds at its last answer
        self._has_proc = False  # whether /proc gives the child's CPU time

    def _start(self) -> Connection:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(
            target=_serve, args=(child, self._buffer, self.settings), daemon=True
        )
        self._process.start()
        child.close()
        if not parent.poll(_STARTUP_TIMEOUT_S):
            raise RuntimeError(f"the extractor process did not start within {_STARTUP_TIMEOUT_S} s")
        _, self._child_cpu, _ = _REPLY.unpack(parent.recv_bytes())
        assert self._process.pid is not None
        self._has_proc = _cpu_seconds(self._process.pid) is not None
        self._conn = parent
        return parent

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join()  # dead before the map is written again
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None

    def _wait(self, conn: Connection) -> bool:
        """True when the child answered within its CPU budget (or, without /proc, its wall budget).
        Its CPU time is counted from its own figure at its previous answer, so a page answered within
        the first poll needs no /proc read (/proc truncates to clock ticks: a page may overrun by at
        most two ticks unnoticed, as it could by one with two /proc reads)."""
        assert self._process is not None and self._process.pid is not None
        pid, budget = self._process.pid, self.settings.timeout_s
        wall_limit = budget * (_WALL_FACTOR if self._has_proc else 1.0)
        started = time.monotonic()
        while not conn.poll(_POLL_S):
            if time.monotonic() - started > wall_limit:
                return False
            cpu = _cpu_seconds(pid) if self._has_proc else None
            if cpu is not None and cpu - self._child_cpu > budget:
                return False
        return True

    def __call__(self, html: str) -> tuple[str | None, str]:
        conn = self._conn or self._start()
        page, surrogates = _encode(html)
        try:
            conn.send_bytes(_put(self._buffer, _REQUEST, _IN_BUFFER, surrogates, page))
            if self._wait(conn):
                outcome, self._child_cpu, data = _take(self._buffer, conn.recv_bytes(), _REPLY)
                if outcome == _ERROR:
                    log.debug("extraction failed: %s", data.decode("utf-8"))
                    return None, "error"
                text = None if outcome == _NO_TEXT else data.decode("utf-8", "surrogatepass")
                return text, "ok"
        except (EOFError, OSError, BrokenPipeError) as exc:  # the child died (e.g. out of memory)
            log.warning("extractor process died: %s", exc)
            self._kill()
            return None, "error"
        self._kill()
        return None, "timeout"

    def close(self) -> None:
        self._kill()


# Script, style, noscript and template elements, and comments, each up to its first closing tag (or
# "-->"): what `<(script|...)\b.*?</\1\s*>|<!--.*?-->` matches, written as an unrolled loop that runs
# over everything but "<" (or "-") in one step instead of trying the closing tag after every character:
# ~3x faster on the bench's pages, and still linear in the page on an element that is never closed.
_INVISIBLE = re.compile(
    r"<(script|style|noscript|template)\b[^<]*(?:<(?!/\1\s*>)[^<]*)*</\1\s*>"
    r"|<!--[^-]*(?:-(?!->)[^-]*)*-->",
    re.IGNORECASE | re.DOTALL,
)
_TAG = re.compile(r"<[^>]*>")


def visible_text(html: str, max_chars: int) -> str:
    """A crude, fast (~1 ms) approximation of a page's visible text: enough to tell its language,
    never used as document text. Whitespace runs become one space (`str.split` splits where the
    regex `\\s+` would match, at a fraction of its cost)."""
    text = _TAG.sub(" ", _INVISIBLE.sub(" ", html))
    return " ".join(unescape(text).split())[:max_chars]
