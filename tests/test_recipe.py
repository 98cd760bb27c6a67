"""Recipes: the fineweb preset holds FineWeb's published thresholds; files extend it; overrides are typed
and every number has declared bounds."""

from __future__ import annotations

import re

import pytest

from tokenmill.pipeline.ingest.filters import FILTERS
from tokenmill.pipeline.recipe import BOUNDS, RecipeError, load_recipe


def test_fineweb_preset_has_the_design_thresholds():
    recipe = load_recipe("fineweb")
    assert recipe.name == "fineweb"
    language = recipe.section("language")
    assert (language["model"], language["languages"], language["threshold"]) == ("", ["en"], 0.65)
    repetition = recipe.section("gopher_repetition")
    assert repetition["dup_ngram_fracs"] == [0.15, 0.14, 0.13, 0.12, 0.11, 0.10]
    assert dict(zip(repetition["top_ngram_sizes"], repetition["top_ngram_fracs"], strict=True)) == {
        2: 0.20,
        3: 0.18,
        4: 0.16,
    }
    assert recipe.section("c4")["filter_no_terminal_punct"] is False
    assert recipe.section("fineweb_quality")["char_duplicates_ratio"] == 0.01


def test_a_file_extends_the_preset_and_overrides_win(tmp_path):
    path = tmp_path / "strict.toml"
    path.write_text('extends = "fineweb"\nname = "strict"\n[language]\nthreshold = 0.9\n')
    recipe = load_recipe(str(path), ["gopher_quality.min_doc_words=100", 'language.languages=["en", "de"]'])
    assert recipe.name == "strict"
    assert recipe.section("language")["threshold"] == 0.9
    assert recipe.section("language")["languages"] == ["en", "de"]
    assert recipe.section("gopher_quality")["min_doc_words"] == 100
    assert recipe.section("gopher_quality")["max_doc_words"] == 100_000  # inherited
    assert recipe.sha256 != load_recipe("fineweb").sha256


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["gopher_quality.min_words=3"], "unknown recipe key"),
        (["language.threshold=high"], "wrong type"),
        (["c4.filter_javascript=1"], "wrong type"),
        (["threshold=0.5"], "section.key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(overrides, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe("fineweb", overrides)


def _numbers(tables: dict) -> set[str]:
    """Every "table.key" of the tables whose value is a number or a list of numbers."""

    def numeric(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return {
        f"{table}.{key}"
        for table, values in tables.items()
        for key, value in values.items()
        if numeric(value) or (isinstance(value, list) and value and all(map(numeric, value)))
    }


def test_every_number_of_the_preset_has_bounds_and_every_bound_a_key():
    assert set(BOUNDS) == _numbers(load_recipe("fineweb").tables)


def test_every_rule_limit_is_a_bounded_number():
    """The rules read their limits from the recipe, so each limit key has bounds (and its `off` value)."""
    for filter_class in FILTERS:
        for rule in filter_class.rules:
            assert f"{filter_class.name}.{rule.key}" in BOUNDS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["language.languages=en"], "'en' is a string, not a list"),
        (["url.extra_lists=[3]"], "entry 3 is a number, not a string"),  # the preset's list is empty
        (['gopher_quality.stop_words=["the", true]'], "entry True is true or false, not a string"),
        (["language.threshold=-0.01"], "-0.01 is not a number in [0, 1]"),
        (["gopher_repetition.top_ngram_sizes=[2, 0]"], "entry 0 is not a whole number >= 1"),
        (["gopher_quality.min_doc_words=50.5"], "50.5 is not a whole number >= 0"),
        (["reader.max_payload_bytes=0"], "0 is not a whole number >= 1"),
        (["c4.min_words_per_line=-3"], "-3 is not a whole number >= 0 or -1 (off)"),
    ],
)
def test_values_of_the_wrong_type_or_out_of_bounds_are_refused(overrides, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        load_recipe("fineweb", overrides)


def test_off_values_and_bounds_edges_are_accepted():
    """-1 switches c4's sentence rule off (its rule declares it) and its per-line checks (their bounds)."""
    recipe = load_recipe(
        "fineweb",
        [
            "c4.min_num_sentences=-1",
            "c4.max_word_length=-1",
            "language.threshold=1",
            "gopher_quality.min_doc_words=0",
            "fineweb_quality.new_line_ratio=2.5",
            "gopher_quality.max_avg_word_length=10.5",
        ],
    )
    assert recipe.section("c4")["min_num_sentences"] == recipe.section("c4")["max_word_length"] == -1
    assert recipe.section("fineweb_quality")["new_line_ratio"] == 2.5


def test_a_recipe_file_without_extends_is_checked_too(tmp_path):
    path = tmp_path / "standalone.toml"
    path.write_text('name = "standalone"\n[language]\nthreshold = 65\n')
    with pytest.raises(RecipeError, match="'language.threshold' is out of range: 65 is not"):
        load_recipe(str(path))


def test_unknown_preset_names_the_presets():
    with pytest.raises(RecipeError, match="fineweb"):
        load_recipe("finewbe")


def test_hash_is_stable_across_loads():
    assert load_recipe("fineweb").sha256 == load_recipe("fineweb").sha256
