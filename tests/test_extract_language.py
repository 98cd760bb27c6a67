"""Extraction under a real time bound, and language identification with the real lid.176 model."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA
from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.extract import _INVISIBLE, Extractor, ExtractSettings, visible_text
from tokenmill.pipeline.ingest.filters.language import LanguageFilter, bundled_model_path, load_model
from tokenmill.pipeline.recipe import load_recipe

RECIPE = load_recipe("fineweb")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def extractor():
    extractor = Extractor(ExtractSettings.from_section(RECIPE.section("extract")))
    yield extractor
    extractor.close()


def _language_filter(**overrides) -> LanguageFilter:
    section = RECIPE.section("language")
    section.update(overrides)
    return LanguageFilter.from_section(section)


def test_extracts_main_text_of_a_real_page(extractor):
    html = (DATA / "extraction" / "dclm_common_crawl_paragraph1.html").read_text(encoding="utf-8")
    text, status = extractor(html)
    assert status == "ok"
    assert text and len(text) > 200
    assert "<" not in text[:200]


def test_pathological_page_times_out_and_the_extractor_recovers(extractor):
    slow_page = "<html><body>" + "".join(f"<p>Sentence {i} has a few words in it.</p>" for i in range(30000))
    started = time.perf_counter()
    text, status = extractor(slow_page + "</body></html>")
    elapsed = time.perf_counter() - started
    assert (text, status) == (None, "timeout")
    # The bound is on the child's CPU time; a wall-clock backstop of 4x guarantees the call returns.
    assert elapsed < RECIPE.section("extract")["timeout_s"] * 4 + 1.0
    html = (DATA / "extraction" / "dclm_common_crawl_paragraph2.html").read_text(encoding="utf-8")
    assert extractor(html)[1] == "ok"


def test_extraction_does_not_depend_on_pages_seen_before(extractor):
    """trafilatura's dedup cache is process-wide; extracting a page twice must give the same text."""
    html = (DATA / "extraction" / "dclm_common_crawl_paragraph3.html").read_text(encoding="utf-8")
    first, _ = extractor(html)
    for _ in range(3):
        again, _ = extractor(html)
        assert again == first


def test_the_bundled_model_is_the_real_lid176():
    """The compressed lid.176 model as Facebook published it (938,013 bytes), scoring many languages."""
    assert bundled_model_path().endswith("lid.176.ftz")
    assert Path(bundled_model_path()).stat().st_size == 938_013
    labels, probs = load_model(bundled_model_path()).predict(
        "Ceci est une phrase en français.", k=-1, threshold=0.0
    )
    assert labels[0] == "__label__fr"
    assert abs(sum(probs) - 1.0) < 1e-3


# Imports tokenmill from the code zip alone (setuptools' editable-install finder set aside), as a Spark
# executor does with --py-files, and loads both packaged fastText models.
_FROM_ZIP = """
import sys
sys.meta_path[:] = [finder for finder in sys.meta_path if "editable" not in repr(finder).lower()]
sys.path.insert(0, sys.argv[1])
from tokenmill.pipeline.ingest.filters.language import bundled_model_path, load_model
from tokenmill.pipeline.quality.classifier import QualityClassifier
assert ".zip" in sys.modules["tokenmill.pipeline"].__file__
print(load_model(bundled_model_path()).predict("Ceci est une phrase en français.")[0][0])
print(QualityClassifier.load("demo").label)
"""


def test_the_packaged_models_load_when_the_code_runs_from_a_zip(tmp_path):
    """fastText opens only real files, and spark-submit --py-files ships the code as a zip."""
    sys.path.insert(0, str(REPO / "infra"))
    try:
        import pack
    finally:
        sys.path.remove(str(REPO / "infra"))
    code = pack.pack_code(tmp_path / "tokenmill-code.zip")
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where the copies of the models go
    finished = subprocess.run(
        [sys.executable, "-c", _FROM_ZIP, str(code)], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.split() == ["__label__fr", "__label__hq"]
    assert [path.name for path in (tmp_path / "tokenmill-resources").rglob("*.ftz")] == ["lid.176.ftz"]


def test_english_passes_and_other_languages_are_dropped():
    english = (DATA / "text" / "cs336_high_quality_wiki_reference.txt").read_text(encoding="utf-8")
    keep = _language_filter()
    doc = Document(id="en", text=english, url="https://example.org/", date="", file_path="")
    assert keep(doc) is None
    assert doc.language == "en" and doc.language_score > 0.65
    german = "Die Katze sitzt auf der Matte und schaut aus dem Fenster, weil draußen die Vögel singen."
    doc = Document(id="de", text=german, url="https://example.de/", date="", file_path="")
    assert keep(doc) == "other_language"
    assert doc.language == "de"


def test_threshold_is_strict_and_configurable():
    text = "Hello there, this is English."
    probe = Document(id="x", text=text, url="u", date="", file_path="")
    _language_filter()(probe)
    exact = _language_filter(threshold=probe.language_score)
    assert exact(Document(id="x", text=text, url="u", date="", file_path="")) == "below_threshold"
    lower = _language_filter(threshold=probe.language_score - 1e-6)
    assert lower(Document(id="x", text=text, url="u", date="", file_path="")) is None


def test_newlines_are_spaces_for_scoring():
    keep = _language_filter()
    lines = "The weather is nice today\nand we are going to the park\nwith our friends and family."
    assert keep.scores(lines) == keep.scores(lines.replace("\n", " "))


def _first_html(path, url_part: str = "") -> str:
    from tokenmill.pipeline.ingest.charset import decode_html
    from tokenmill.pipeline.ingest.warc import RawRecord, iter_records

    with open(path, "rb") as stream:
        for record in iter_records(stream):
            if isinstance(record, RawRecord) and record.rec_type == "response" and url_part in record.url:
                decoded = decode_html(record.body, record.http_content_type)
                if decoded:
                    return decoded[0]
    raise AssertionError(f"no HTML response in {path}")


def test_precheck_skips_pages_clearly_in_another_language():
    japanese = _first_html(DATA / "warc" / "resiliparse-clueweb-quirk.warc.gz")
    english = _first_html(DATA / "warc" / "dolma-sample-0000.warc.gz")
    assert visible_text(japanese, 2000).count("の") > 3
    doc = Document(id="ja", text="", url="http://example.jp/", date="", file_path="")
    assert _language_filter().precheck(doc, japanese) is False
    assert doc.language == "ja"
    doc = Document(id="en", text="", url="http://example.com/", date="", file_path="")
    assert _language_filter().precheck(doc, english) is True
    assert _language_filter(skip_extraction_below=0.0).precheck(doc, japanese) is True  # off: datatrove's way


def test_precheck_reads_precheck_chars_of_the_visible_text():
    japanese = visible_text(_first_html(DATA / "warc" / "resiliparse-clueweb-quirk.warc.gz"), 300)
    english = "The weather is nice today and we are going to the park with our friends and family. " * 40
    page = f"<html><body><p>{japanese}</p><p>{english}</p></body></html>"
    assert _language_filter().config.precheck_chars == 20_000  # the preset leaves the key out
    doc = Document(id="x", text="", url="http://example.com/", date="", file_path="")
    assert _language_filter().precheck(doc, page) is True
    assert _language_filter(precheck_chars=300).precheck(doc, page) is False
    assert doc.language == "ja"
    overridden = load_recipe("fineweb", ["language.precheck_chars=300"]).section("language")
    assert LanguageFilter.from_section(overridden).config.precheck_chars == 300


def test_visible_text_drops_markup_scripts_and_comments():
    html = "<html><head><style>p {color: red}</style><script>var x = '<p>';</script></head>"
    html += "<body><!-- hidden --><p>Fish &amp; chips</p>\n<p>are   good</p></body></html>"
    assert visible_text(html, 100) == "Fish & chips are good"
    assert visible_text(html, 4) == "Fish"


# The definition _INVISIBLE's unrolled loop must match exactly: each element up to its first closing tag.
LAZY_INVISIBLE = re.compile(
    r"<(script|style|noscript|template)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL
)


def test_invisible_elements_end_at_their_first_closing_tag_as_the_lazy_pattern_says():
    """Seeded strings of markup fragments (closing tags with spaces and other cases, unclosed elements,
    dashes around comments, the long s and the Kelvin sign that case-fold to ASCII letters) and the
    repository's real pages: the unrolled pattern removes exactly what the lazy one does."""
    fragments = [
        "<script>", "</script>", "</SCRIPT >", "</script\n\t>", "<Script type=x>", "<scripts>", "</scripts>",
        "<style>", "</style>", "</STYLE  >", "<noscript>", "</noscript>", "<template>", "</template >",
        "<!--", "-->", "--->", "-", "--", "<", ">", "</", "a", " ", "\n", "x<y", "\u017f", "\u212a",
        "<\u017fcript>", "</\u017fcript>", "<!---->", "<!-->",
    ]  # fmt: skip
    rng = random.Random(7)
    texts = ["".join(rng.choices(fragments, k=rng.randint(1, 30))) for _ in range(20_000)]
    texts += [path.read_text(encoding="utf-8") for path in sorted((DATA / "extraction").glob("*.html"))]
    assert any(LAZY_INVISIBLE.search(text) for text in texts[-5:])
    for text in texts:
        assert _INVISIBLE.sub(" ", text) == LAZY_INVISIBLE.sub(" ", text), repr(text)


def test_visible_text_collapses_every_unicode_whitespace():
    # &nbsp; (U+00A0), an em space, the ASCII separators U+001C..U+001F and a line separator.
    html = "<p> Fish&nbsp;\u2003and\x1c\x1d\x1e\x1fchips\u2028</p>\t<p>\rare good\u3000</p> "
    assert visible_text(html, 100) == "Fish and chips are good"
    assert visible_text(html, 5) == "Fish "
