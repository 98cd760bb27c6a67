"""Recipes: the fineweb preset holds FineWeb's published thresholds; files extend it; overrides are typed."""

from __future__ import annotations

import pytest

from tokenmill.pipeline.recipe import RecipeError, load_recipe


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


def test_unknown_preset_names_the_presets():
    with pytest.raises(RecipeError, match="fineweb"):
        load_recipe("finewbe")


def test_hash_is_stable_across_loads():
    assert load_recipe("fineweb").sha256 == load_recipe("fineweb").sha256
