"""Recipes: the fineweb preset holds FineWeb's published thresholds; files extend it; overrides are typed
and every number has declared bounds."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from tokenmill.pipeline.ingest.filters import FILTERS
from tokenmill.pipeline.quality.classifier import DEMO_MODEL
from tokenmill.pipeline.recipe import BOUNDS, OPTIONAL, RecipeError, load_recipe, optional_value


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


# ---------------------------------------------------------------- optional keys


def test_an_optional_key_left_out_leaves_the_recipe_and_its_hash_as_they_were(tmp_path):
    fineweb = load_recipe("fineweb")
    assert "precheck_chars" not in fineweb.section("language")
    assert optional_value(fineweb.section("language"), "language.precheck_chars") == 20_000
    path = tmp_path / "same.toml"
    path.write_text('extends = "fineweb"\nname = "fineweb"\n[language]\nthreshold = 0.65\n')
    assert load_recipe(str(path)).to_json() == fineweb.to_json()


def test_an_optional_key_is_set_by_override_or_file_and_changes_the_hash(tmp_path):
    overridden = load_recipe("fineweb", ["language.precheck_chars=2000"])
    assert overridden.section("language")["precheck_chars"] == 2000
    assert optional_value(overridden.section("language"), "language.precheck_chars") == 2000
    assert overridden.sha256 != load_recipe("fineweb").sha256
    path = tmp_path / "short.toml"
    path.write_text('extends = "fineweb"\nname = "fineweb"\n[language]\nprecheck_chars = 2000\n')
    assert load_recipe(str(path)).sha256 == overridden.sha256


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["language.precheck_chars=0"],
            "'language.precheck_chars' is out of range: 0 is not a whole number >= 1",
        ),
        (["language.precheck_chars=2000.5"], "2000.5 is not a whole number >= 1"),
        (["language.precheck_chars=many"], "'many' is a string, not a number"),
        (["language.precheck_chars=true"], "True is true or false, not a number"),
        (["url.precheck_chars=2000"], "unknown recipe key url.'precheck_chars'"),
    ],
)
def test_wrong_optional_values_are_one_line_errors(overrides, message):
    with pytest.raises(RecipeError, match=re.escape(message)) as error:
        load_recipe("fineweb", overrides)
    assert "\n" not in str(error.value)


def test_an_unknown_key_names_the_optional_ones_too():
    with pytest.raises(RecipeError, match=re.escape("'precheck_chars', 'skip_extraction_below'")):
        load_recipe("fineweb", ["language.precheck=2000"])


def test_optional_keys_are_bounded_and_checked_in_a_file_without_extends(tmp_path):
    for label, (default, bounds) in OPTIONAL.items():
        assert label not in BOUNDS and bounds.admits(default)
    path = tmp_path / "standalone.toml"
    path.write_text('name = "standalone"\n[language]\nprecheck_chars = -5\n')
    with pytest.raises(RecipeError, match="'language.precheck_chars' is out of range: -5"):
        load_recipe(str(path))


# ---------------------------------------------------------------- [[classifiers]]

DEMO_SHA256 = hashlib.sha256((DEMO_MODEL / "model.bin").read_bytes()).hexdigest()


def _recipe_file(directory: Path, body: str, name: str = "scored.toml") -> str:
    path = directory / name
    path.write_text(f'extends = "fineweb"\n{body}')
    return str(path)


def test_a_classifier_entry_is_completed_and_recorded(tmp_path):
    recipe = load_recipe(_recipe_file(tmp_path, '[[classifiers]]\nname = "edu"\nmodel = "demo"\n'))
    assert recipe.tables["classifiers"] == [
        {"name": "edu", "model": "demo", "label": "__label__hq", "model_sha256": DEMO_SHA256}
    ]
    (classifier,) = recipe.classifiers
    assert (classifier.column, classifier.label) == ("score_edu", "__label__hq")
    assert '"classifiers"' in recipe.to_json()
    assert recipe.sha256 != load_recipe(_recipe_file(tmp_path, "", "plain.toml")).sha256


def test_no_classifiers_leave_the_recipe_and_its_hash_as_they_were(tmp_path):
    empty = load_recipe(_recipe_file(tmp_path, 'name = "fineweb"\nclassifiers = []\n'))
    assert "classifiers" not in empty.tables
    assert empty.classifiers == []
    assert empty.sha256 == load_recipe("fineweb").sha256


def test_model_paths_are_relative_to_the_recipe_file_and_labels_can_be_chosen(tmp_path, monkeypatch):
    shutil.copytree(DEMO_MODEL, tmp_path / "models" / "mine")
    recipe_path = _recipe_file(
        tmp_path,
        '[[classifiers]]\nname = "hq"\nmodel = "models/mine"\n'
        '[[classifiers]]\nname = "lq"\nmodel = "models/mine"\nlabel = "__label__lq"\n',
    )
    monkeypatch.chdir(DEMO_MODEL)  # the working directory plays no part
    hq, lq = load_recipe(recipe_path).classifiers
    assert hq.model == lq.model == str((tmp_path / "models" / "mine").resolve())
    assert (hq.label, lq.label) == ("__label__hq", "__label__lq")
    assert hq.model_sha256 == DEMO_SHA256


def test_a_file_inherits_its_parents_classifiers_unless_it_names_its_own(tmp_path):
    shutil.copytree(DEMO_MODEL, tmp_path / "base" / "model")
    parent = _recipe_file(tmp_path / "base", '[[classifiers]]\nname = "base"\nmodel = "model"\n')
    child = tmp_path / "child.toml"
    child.write_text(f'extends = "{parent}"\n')
    (inherited,) = load_recipe(str(child)).classifiers
    assert (inherited.name, inherited.model) == ("base", str((tmp_path / "base" / "model").resolve()))
    child.write_text(f'extends = "{parent}"\n[[classifiers]]\nname = "own"\nmodel = "demo"\n')
    assert [c.name for c in load_recipe(str(child)).classifiers] == ["own"]
    child.write_text(f'extends = "{parent}"\nclassifiers = []\n')
    assert load_recipe(str(child)).classifiers == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('classifiers = "demo"\n', "must be an array of tables: [[classifiers]]"),
        ('[[classifiers]]\nname = "a"\nmodel = "demo"\nthreshold = "0.5"\n', "unknown recipe key"),
        ('[[classifiers]]\nname = 3\nmodel = "demo"\n', "3 is a number, not a string"),
        ('[[classifiers]]\nmodel = "demo"\n', "#1 lacks 'name'"),
        ('[[classifiers]]\nname = "a"\n', "#1 lacks 'model'"),
        ('[[classifiers]]\nname = "Edu"\nmodel = "demo"\n', "'Edu' is not a column-safe name"),
        ('[[classifiers]]\nname = "edu-2"\nmodel = "demo"\n', "'edu-2' is not a column-safe name"),
        ('[[classifiers]]\nname = "2edu"\nmodel = "demo"\n', "'2edu' is not a column-safe name"),
        (
            '[[classifiers]]\nname = "a"\nmodel = "demo"\n[[classifiers]]\nname = "a"\nmodel = "demo"\n',
            "the name 'a' is given twice",
        ),
        ('[[classifiers]]\nname = "a"\nmodel = "no/such/dir"\n', "no/such/dir is not a quality model"),
        ('[[classifiers]]\nname = "a"\nmodel = "s3://bucket/model"\n', "local paths only"),
        ('[[classifiers]]\nname = "a"\nmodel = "demo"\nlabel = "hq"\n', "the model has no label 'hq'"),
    ],
)
def test_bad_classifier_entries_are_clear_errors(tmp_path, body, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        load_recipe(_recipe_file(tmp_path, body))


def test_a_model_directory_needs_its_card(tmp_path):
    shutil.copytree(DEMO_MODEL, tmp_path / "model")
    (tmp_path / "model" / "card.json").unlink()
    with pytest.raises(RecipeError, match="is not a quality model"):
        load_recipe(_recipe_file(tmp_path, '[[classifiers]]\nname = "a"\nmodel = "model"\n'))


def test_classifiers_are_not_set_on_the_command_line():
    with pytest.raises(RecipeError, match="unknown recipe key 'classifiers'"):
        load_recipe("fineweb", ["classifiers.name=demo"])
