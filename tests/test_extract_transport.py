"""The extractor's transport (pages and texts through a shared map, small headers through the pipe): the
same text as the engine called directly, for pages larger than the map, after a child dies mid-page,
and with no /proc read for a page answered within the first poll."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from tests.conftest import DATA, WARC_DIR
from tokenmill.pipeline.ingest import extract
from tokenmill.pipeline.ingest.charset import decode_html
from tokenmill.pipeline.ingest.extract import Extractor, ExtractSettings
from tokenmill.pipeline.ingest.warc import RawRecord, iter_records
from tokenmill.pipeline.recipe import load_recipe


def _settings(engine: str) -> ExtractSettings:
    return ExtractSettings.from_section(
        load_recipe("fineweb", [f"extract.engine={engine}"]).section("extract")
    )


def _real_pages() -> list[str]:
    """The five DCLM pages and the HTML responses of a real Common Crawl sample, in many languages."""
    pages = [
        (DATA / "extraction" / f"dclm_common_crawl_paragraph{number}.html").read_text(encoding="utf-8")
        for number in range(1, 6)
    ]
    for name in ("dolma-sample-0000.warc.gz", "dolma-sample-0001.warc.gz"):
        with open(WARC_DIR / name, "rb") as stream:
            for record in iter_records(stream):
                if isinstance(record, RawRecord) and record.rec_type == "response":
                    decoded = decode_html(record.body, record.http_content_type)
                    if decoded:
                        pages.append(decoded[0])
    return pages


PAGES = _real_pages()
LONE_SURROGATE = (
    "<html><body><article><p>"
    + "A few words and a lone \ud800 surrogate. " * 30
    + "</p></article></body></html>"
)


@pytest.mark.parametrize("engine", ["resiliparse", "trafilatura"])
@pytest.mark.parametrize("buffer_bytes", [extract.BUFFER_BYTES, 4096])
def test_the_text_is_the_engines_own(engine, buffer_bytes):
    """Through the map, or through the pipe where a page or text is larger than the map (4 KB: every
    one of these pages), every page gets exactly the text of a direct call on its str."""
    settings = _settings(engine)
    assert len(PAGES) == 42 and all(len(page.encode("utf-8")) > 4096 for page in PAGES)
    extractor = Extractor(settings, buffer_bytes=buffer_bytes)
    try:
        for page in PAGES:
            assert extractor(page) == (extract._extract_one(page, settings), "ok")
    finally:
        extractor.close()


def test_a_text_larger_than_the_map_comes_back_whole():
    page = "<html><body>" + "".join(f"<p>Sentence {i} has a few words in it.</p>" for i in range(2000))
    extractor = Extractor(_settings("resiliparse"), buffer_bytes=4096)
    try:
        text, status = extractor(page + "</body></html>")
    finally:
        extractor.close()
    assert status == "ok" and len(text.encode("utf-8")) > 4096 * 10
    assert text.count("has a few words in it.") == 2000


def test_a_page_with_a_lone_surrogate_reaches_the_engine_as_that_str():
    """Strict UTF-8 cannot carry it: trafilatura extracts the same text as from the str, and Resiliparse
    fails on it as it does when called directly."""
    settings = _settings("trafilatura")
    extractor = Extractor(settings)
    try:
        assert extractor(LONE_SURROGATE) == (extract._extract_one(LONE_SURROGATE, settings), "ok")
    finally:
        extractor.close()
    with pytest.raises(TypeError):  # Resiliparse's words for a str it cannot encode
        extract._extract_one(LONE_SURROGATE, _settings("resiliparse"))
    extractor = Extractor(_settings("resiliparse"))
    try:
        assert extractor(LONE_SURROGATE) == (None, "error")
        assert extractor(PAGES[0])[1] == "ok"
    finally:
        extractor.close()


def test_a_child_killed_mid_page_is_an_error_and_the_next_page_is_extracted():
    """20,000 nested <div>s keep Resiliparse busy for seconds; the child dies of SIGKILL meanwhile."""
    settings = _settings("resiliparse")
    extractor = Extractor(settings)
    try:
        assert extractor(PAGES[0])[1] == "ok"
        assert extractor._process is not None and extractor._process.pid is not None
        killer = threading.Timer(0.2, os.kill, (extractor._process.pid, signal.SIGKILL))
        killer.start()
        nested = "<html><body>" + "<div>" * 20000 + "deep" + "</div>" * 20000 + "</body></html>"
        assert extractor(nested) == (None, "error")
        killer.join()
        for page in PAGES[:5]:
            assert extractor(page) == (extract._extract_one(page, settings), "ok")
    finally:
        extractor.close()


def test_pages_answered_within_the_first_poll_read_no_proc(monkeypatch):
    """The child's CPU time at its previous answer is the budget's baseline; /proc is read only for a
    page still running at the first poll, and the bound still holds for one that overruns."""
    reads: list[int] = []
    real = extract._cpu_seconds
    monkeypatch.setattr(extract, "_cpu_seconds", lambda pid: reads.append(pid) or real(pid))
    extractor = Extractor(_settings("resiliparse"))
    try:
        assert extractor(PAGES[0])[1] == "ok"  # starts the child: one read, whether /proc is there
        reads.clear()
        for page in sorted(PAGES, key=len)[:20]:
            assert extractor(page)[1] == "ok"
        assert len(reads) <= 2  # none unless a loaded machine left a page unanswered at the first poll
        nested = "<html><body>" + "<div>" * 30000 + "deep" + "</div>" * 30000 + "</body></html>"
        assert extractor(nested) == (None, "timeout")
        assert reads
    finally:
        extractor.close()
