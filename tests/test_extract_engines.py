"""The recipe's `extract.engine`: Resiliparse beside trafilatura under the same time bound, chosen and
checked by the recipe, part of the recipe's fingerprint, and end to end through `tokenmill ingest` on
real WARCs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from tests.conftest import DATA, WARC_DIR
from tokenmill.jobs import cli
from tokenmill.pipeline.ingest.extract import ENGINES, Extractor, ExtractSettings
from tokenmill.pipeline.ingest.unit import IngestJob, unit_fingerprint
from tokenmill.pipeline.recipe import RecipeError, load_recipe

RESILIPARSE = load_recipe("fineweb", ["extract.engine=resiliparse"])


def _resiliparse(**changes) -> Extractor:
    return Extractor(ExtractSettings.from_section({**RESILIPARSE.section("extract"), **changes}))


@pytest.fixture(scope="module")
def resiliparse():
    extractor = _resiliparse()
    yield extractor
    extractor.close()


def _page(number: int) -> str:
    return (DATA / "extraction" / f"dclm_common_crawl_paragraph{number}.html").read_text(encoding="utf-8")


def test_the_fineweb_preset_keeps_trafilatura():
    assert load_recipe("fineweb").section("extract")["engine"] == "trafilatura"
    assert ENGINES == ("trafilatura", "resiliparse")


def test_resiliparse_keeps_the_main_content_of_a_real_page(resiliparse):
    text, status = resiliparse(_page(5))
    assert status == "ok"
    assert "Vetlanda Svarv & Fräs bearbetar detaljer i stål, järn, aluminium och plast" in text
    assert "Peder Gustafsson har arbetat många år i dessa branscher" in text
    assert "Kontor och lokaler" not in text  # the navigation menu is not main content
    assert "•" not in text  # no list bullets inserted
    assert text == text.strip()


def test_resiliparse_leaves_out_alt_texts_and_form_fields(resiliparse):
    paragraph = "<p>" + "This paragraph is the article that a reader came to this page for. " * 8 + "</p>"
    html = (
        f"<html><body><article>{paragraph}<img src='a.png' alt='An alternative text'>"
        "<form><input type='text' value='A form value'></form></article></body></html>"
    )
    text, status = resiliparse(html)
    assert status == "ok" and "the article that a reader came to this page for" in text
    assert "An alternative text" not in text and "A form value" not in text


def test_resiliparse_extracts_the_page_trafilatura_times_out_on(resiliparse):
    """30,000 paragraphs overrun trafilatura's CPU bound; Resiliparse reads them well within it."""
    slow_page = "<html><body>" + "".join(f"<p>Sentence {i} has a few words in it.</p>" for i in range(30000))
    text, status = resiliparse(slow_page + "</body></html>")
    assert status == "ok"
    assert text.count("has a few words in it.") == 30000


def test_deep_nesting_overruns_resiliparse_too_and_the_extractor_recovers(resiliparse):
    """Resiliparse's main-content pass is quadratic in nesting depth: the bound holds for it as well."""
    nested = "<html><body>" + "<div>" * 30000 + "deep" + "</div>" * 30000 + "</body></html>"
    assert resiliparse(nested) == (None, "timeout")
    text, status = resiliparse(_page(5))
    assert status == "ok" and "Vetlanda Svarv" in text


def test_trafilatura_only_settings_change_nothing_for_resiliparse(resiliparse):
    page = _page(1)
    expected = resiliparse(page)
    changed = _resiliparse(
        favor_precision=not RESILIPARSE.section("extract")["favor_precision"], deduplicate=False
    )
    try:
        assert changed(page) == expected
    finally:
        changed.close()
    assert expected[1] == "ok" and expected[0]


def test_an_unknown_engine_is_a_one_line_error_naming_the_engines():
    with pytest.raises(RecipeError, match="extract.engine.*trafilatura, resiliparse") as raised:
        load_recipe("fineweb", ["extract.engine=readability"])
    assert "\n" not in str(raised.value)
    with pytest.raises(RecipeError, match="wrong type"):
        load_recipe("fineweb", ["extract.engine=1"])


def test_the_engine_is_part_of_every_unit_fingerprint():
    uri = str(WARC_DIR / "dolma-sample-0000.warc.gz")
    default = IngestJob(root="out", recipe=load_recipe("fineweb"))
    switched = IngestJob(root="out", recipe=RESILIPARSE)
    assert RESILIPARSE.sha256 != default.recipe.sha256
    assert unit_fingerprint(uri, switched) != unit_fingerprint(uri, default)


def test_ingest_rejects_an_unknown_engine_before_any_work(tmp_path, capsys):
    root = tmp_path / "out"
    status = cli.main(
        ["ingest", str(WARC_DIR / "whirlwind.warc.gz"), "-o", str(root), "--set", "extract.engine=goose"]
    )
    assert status == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "trafilatura, resiliparse" in error
    assert not root.exists()


def test_ingest_with_resiliparse_end_to_end(spark, tmp_path):
    inputs = [WARC_DIR / name for name in ("dolma-sample-0000.warc.gz", "dolma-sample-0001.warc.gz")]
    root = tmp_path / "out"
    status = cli.main(
        [
            "ingest",
            *map(str, inputs),
            "-o",
            str(root),
            "--set",
            "extract.engine=resiliparse",
            "--master",
            "local[2]",
        ]
    )
    assert status == 0
    units = {
        Path(unit["path"]).name: unit
        for unit in (json.loads(path.read_text()) for path in (root / "stats" / "units").glob("*.json"))
    }
    assert {name: unit["records"] for name, unit in units.items()} == {
        "dolma-sample-0000.warc.gz": 48,
        "dolma-sample-0001.warc.gz": 34,
    }
    for unit in units.values():
        assert unit["records"] == unit["kept"] + sum(unit["dropped"].values()) + sum(unit["errors"].values())
        assert unit["errors"] == {}
        assert not any(reason.startswith("extract:") for reason in unit["dropped"])
    rows = pads.dataset(str(root / "documents"), format="parquet").to_table().to_pylist()
    assert len(rows) == sum(unit["kept"] for unit in units.values()) >= 20
    for row in rows:
        assert row["language"] == "en" and row["language_score"] > 0.65
        assert len(row["text"].split()) >= 50 and "</" not in row["text"]
    (run_record,) = (root / "runs").glob("ingest-*.json")
    assert json.loads(run_record.read_text())["recipe"]["extract"]["engine"] == "resiliparse"
