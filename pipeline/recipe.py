"""A recipe: every threshold of a run, in one TOML document that jobs read and every output records.

A recipe is a preset name (`fineweb`) or a TOML file; a file may say `extends = "fineweb"` and override
single keys, and `KEY=VALUE` overrides (`gopher_quality.min_doc_words=40`) come last. A file may also
name quality classifiers in a `[[classifiers]]` array (name, model, label): ingest adds `score_<name>`
to every kept document (`pipeline/ingest/scores.py`).

Every value must have the type the fineweb preset gives its key (a list's entries too), and every number
must lie in its key's BOUNDS, so a recipe that cannot make sense is a one-line error before any work,
never a run that quietly keeps nothing. A few OPTIONAL keys (`language.precheck_chars`) may be set though
the preset leaves them out: typed and bounded by their default, which applies when they are absent, so a
recipe that does not name them keeps its JSON and sha256.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import tomllib

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.ingest.extract import ENGINES
from tokenmill.pipeline.quality.classifier import CARD_FILE, MODEL_FILE, resolve_model
from tokenmill.pipeline.storage import S3Options, join, list_files, read_bytes

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PRESETS_DIR = (
    resources.files("tokenmill.pipeline") / "presets"
)  # zip-safe: works from spark-submit --py-files
DECLARING_PRESET = "fineweb"  # the type of each of its values is the declared type of that key
ConfigT = TypeVar("ConfigT")
CLASSIFIER_KEYS = ("name", "model", "label")
CLASSIFIER_NAME = re.compile(r"[a-z][a-z0-9_]*")  # a column name Spark, Parquet and SQL take unquoted


class RecipeError(UserError):
    """A recipe that cannot be used: unknown preset, unknown key, wrong type, a value out of range."""


@dataclass(frozen=True)
class Bounds:
    """The numbers a recipe key (or each entry of a list key) can take and still make sense."""

    low: float
    high: float = math.inf
    integer: bool = False
    above_low: bool = False  # `low` itself is excluded
    off: float | None = None  # a value outside the bounds that switches the setting off

    def admits(self, value: float) -> bool:
        if value == self.off:
            return True
        if self.integer and not isinstance(value, int):
            return False
        return (value > self.low if self.above_low else value >= self.low) and value <= self.high

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        if self.high < math.inf:
            text = f"{kind} in [{self.low:g}, {self.high:g}]"
        else:
            text = f"{kind} {'>' if self.above_low else '>='} {self.low:g}"
        return text if self.off is None else f"{text} or {self.off} (off)"


FRACTION = Bounds(0, 1)
COUNT = Bounds(0, integer=True)
COUNT_OR_OFF = Bounds(0, integer=True, off=-1)
SIZE = Bounds(1, integer=True)
NON_NEGATIVE = Bounds(0)
POSITIVE = Bounds(0, above_low=True)

# Where every number of a recipe makes sense, by "table.key" (for a list: each entry). A filter rule's
# `off` value is admitted as well, read from the rule declarations (pipeline/ingest/filters/rules.py).
BOUNDS: dict[str, Bounds] = {
    "reader.max_payload_bytes": SIZE,
    "url.soft_word_threshold": COUNT,
    "extract.timeout_s": POSITIVE,
    "language.threshold": FRACTION,
    "language.skip_extraction_below": FRACTION,
    "gopher_repetition.dup_line_frac": FRACTION,
    "gopher_repetition.dup_para_frac": FRACTION,
    "gopher_repetition.dup_line_char_frac": FRACTION,
    "gopher_repetition.dup_para_char_frac": FRACTION,
    "gopher_repetition.top_ngram_sizes": SIZE,
    "gopher_repetition.top_ngram_fracs": FRACTION,
    "gopher_repetition.dup_ngram_sizes": SIZE,
    "gopher_repetition.dup_ngram_fracs": FRACTION,
    "gopher_quality.min_doc_words": COUNT,
    "gopher_quality.max_doc_words": COUNT,
    "gopher_quality.min_avg_word_length": NON_NEGATIVE,
    "gopher_quality.max_avg_word_length": NON_NEGATIVE,
    "gopher_quality.max_symbol_word_ratio": NON_NEGATIVE,
    "gopher_quality.max_bullet_lines_ratio": FRACTION,
    "gopher_quality.max_ellipsis_lines_ratio": FRACTION,
    "gopher_quality.min_alpha_words_ratio": FRACTION,
    "gopher_quality.min_stop_words": COUNT,
    "c4.min_num_sentences": COUNT,
    "c4.min_words_per_line": COUNT_OR_OFF,
    "c4.max_word_length": COUNT_OR_OFF,
    "fineweb_quality.line_punct_thr": FRACTION,
    "fineweb_quality.short_line_thr": FRACTION,
    "fineweb_quality.short_line_length": COUNT,
    "fineweb_quality.char_duplicates_ratio": FRACTION,
    "fineweb_quality.new_line_ratio": NON_NEGATIVE,
}

# The values a string key can take, by "table.key".
CHOICES: dict[str, tuple[str, ...]] = {"extract.engine": ENGINES}

# Keys the preset leaves out, by "table.key": their default and bounds. An absent key is not added, so
# a recipe that does not name it keeps its JSON and sha256 (and no completed ingest unit reruns); one
# that does may set it in a file or with --set, typed and bounded like the preset's keys.
OPTIONAL: dict[str, tuple[Any, Bounds]] = {
    "language.precheck_chars": (20_000, SIZE),  # how much crude visible text the language precheck reads
}


def optional_value(section: dict[str, Any], label: str) -> Any:
    """An optional key's value in its table, or its default when the recipe does not name it."""
    default, _ = OPTIONAL[label]
    return section.get(label.partition(".")[2], default)


@dataclass(frozen=True)
class RecipeClassifier:
    """One `[[classifiers]]` entry as loaded: `model` is `demo` or an absolute MODEL_DIR, `label` the
    label whose probability is the score, `model_sha256` what reruns ingest when the model changes."""

    name: str
    model: str
    label: str
    model_sha256: str

    @property
    def column(self) -> str:
        return f"score_{self.name}"


@dataclass(frozen=True)
class Recipe:
    name: str
    tables: dict[str, Any]  # name -> table; "classifiers" -> the [[classifiers]] entries, when any

    def section(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.tables.get(name, {}))

    @property
    def classifiers(self) -> list[RecipeClassifier]:
        return [RecipeClassifier(**entry) for entry in self.tables.get("classifiers", [])]

    def to_json(self) -> str:
        return json.dumps({"name": self.name, **self.tables}, sort_keys=True)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()


def table_config(config_class: type[ConfigT], section: dict[str, Any], table: str) -> ConfigT:
    """A stage's typed settings from its recipe table: a missing or unknown key is a RecipeError."""
    try:
        return config_class(**section)
    except TypeError as error:
        raise RecipeError(f"recipe table [{table}]: {error}") from None


def presets() -> list[str]:
    return sorted(
        entry.name.removesuffix(".toml") for entry in PRESETS_DIR.iterdir() if entry.name.endswith(".toml")
    )


def _recipe_file(name_or_path: str) -> Path | Traversable:
    path: Path | Traversable = Path(name_or_path)
    if not path.is_file():
        path = PRESETS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise RecipeError(f"no recipe file or preset named {name_or_path!r}; presets: {presets()}")
    return path


def _read_toml(path: Path | Traversable) -> dict[str, Any]:
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _merge(base: dict[str, Any], override: dict[str, Any], where: str = "") -> dict[str, Any]:
    """BASE with OVERRIDE's values, table by table; a key BASE lacks must be one of the OPTIONAL keys."""
    merged = copy.deepcopy(base)
    optional = {label.removeprefix(where) for label in OPTIONAL if where and label.startswith(where)}
    for key, value in override.items():
        if key not in base:
            if key in optional:
                merged[key] = value  # typed and bounded by validate()
                continue
            raise RecipeError(f"unknown recipe key {where}{key!r}; known: {sorted({*base, *optional})}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise RecipeError(f"recipe key {where}{key!r} must be a table")
            merged[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            merged[key] = value
    return merged


def _kind(value: Any) -> str:
    """A value's kind in words; int and float are both numbers (Bounds say where a whole number belongs)."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _entry_kind(declared: list[Any]) -> str:
    """The kind of a declared list's entries; the preset's empty lists (extra_lists) hold strings."""
    return _kind(declared[0]) if declared else "a string"


def _check_type(label: str, declared: Any, value: Any) -> None:
    expected, found = _kind(declared), _kind(value)
    if found != expected:
        hint = f" (a list in TOML: {label}={json.dumps([value])})" if expected == "a list" else ""
        raise RecipeError(
            f"recipe key '{label}' has the wrong type: {value!r} is {found}, not {expected}{hint}"
        )
    if expected == "a list":
        for entry in value:
            if _kind(entry) != _entry_kind(declared):
                raise RecipeError(
                    f"recipe key '{label}' has the wrong type: entry {entry!r} is {_kind(entry)}, "
                    f"not {_entry_kind(declared)}"
                )


def _rule_off_values() -> dict[str, float]:
    """The value that switches each filter rule off, by "table.key", as the filters declare their rules."""
    from tokenmill.pipeline.ingest.filters import FILTERS  # the filters import this module

    return {
        f"{filter_class.name}.{rule.key}": rule.off
        for filter_class in FILTERS
        for rule in filter_class.rules
        if rule.off is not None
    }


def _check_bounds(label: str, value: Any, rule_off: float | None) -> None:
    bounds = BOUNDS.get(label) or (OPTIONAL[label][1] if label in OPTIONAL else None)
    if bounds is None:
        return
    if rule_off is not None:
        bounds = dataclasses.replace(bounds, off=rule_off)
    for number in value if isinstance(value, list) else [value]:
        if not bounds.admits(number):
            entry = "entry " if isinstance(value, list) else ""
            raise RecipeError(
                f"recipe key '{label}' is out of range: {entry}{number!r} is not {bounds.describe()}"
            )


def _check_choice(label: str, value: Any) -> None:
    choices = CHOICES.get(label)
    if choices is not None and value not in choices:
        raise RecipeError(f"recipe key '{label}' is {value!r}; it takes one of: {', '.join(choices)}")


def validate(tables: dict[str, Any]) -> None:
    """A RecipeError for the first value whose type differs from the declaring preset's (an OPTIONAL
    key's: its default's), that lies outside its BOUNDS or is not one of its CHOICES; other keys the
    preset lacks are left to the stage that reads them."""
    declared_tables = _read_toml(_recipe_file(DECLARING_PRESET))
    offs = _rule_off_values()
    for table, values in tables.items():
        declared = declared_tables.get(table)
        if not isinstance(values, dict) or not isinstance(declared, dict):
            continue
        for key, value in values.items():
            label = f"{table}.{key}"
            if key in declared or label in OPTIONAL:
                _check_type(label, declared[key] if key in declared else OPTIONAL[label][0], value)
                _check_bounds(label, value, offs.get(label))
                _check_choice(label, value)


def _parse_override(text: str) -> dict[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise RecipeError(f"override {text!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw  # a bare string
    section, _, name = key.strip().partition(".")
    return {section: {name: value}}


def _model_dir(model: str, recipe_dir: Path, where: str) -> Path:
    """The model directory a `[[classifiers]]` entry names: `demo`, or a local path relative to its
    recipe file. Executors load it from the same path, so on a cluster it must exist on every node."""
    if "://" in model:
        raise RecipeError(f"{where}: model {model!r}: give `demo` or a local directory (local paths only)")
    path = model if model == "demo" else str(recipe_dir / Path(model).expanduser())
    try:
        return resolve_model(path).resolve()
    except UserError as error:
        raise RecipeError(f"{where}: {error}") from None


def _classifier_entry(entry: dict[str, Any], recipe_dir: Path, where: str) -> dict[str, str]:
    """One `[[classifiers]]` table checked and completed: the label defaults to the card's positive one,
    and the model's sha256 is recorded, so a retrained model reruns ingest like any changed value."""
    for key, value in entry.items():
        if key not in CLASSIFIER_KEYS:
            raise RecipeError(f"unknown recipe key {where}.{key!r}; known: {list(CLASSIFIER_KEYS)}")
        if not isinstance(value, str):
            raise RecipeError(
                f"recipe key {where}.{key!r} has the wrong type: {value!r} is {_kind(value)}, not a string"
            )
    for key in ("name", "model"):
        if key not in entry:
            raise RecipeError(f"{where} lacks {key!r}: every classifier has a name and a model")
    if not CLASSIFIER_NAME.fullmatch(entry["name"]):
        raise RecipeError(
            f"{where}: name {entry['name']!r} is not a column-safe name "
            "(lowercase letters, digits and _, starting with a letter)"
        )
    path = _model_dir(entry["model"], recipe_dir, where)
    card = json.loads((path / CARD_FILE).read_text(encoding="utf-8"))
    labels = [card["label"], card["negative_label"]]
    label = entry.get("label", card["label"])
    if label not in labels:
        raise RecipeError(f"{where}: the model has no label {label!r}; its labels are {labels}")
    with (path / MODEL_FILE).open("rb") as handle:
        model_sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    model = entry["model"] if entry["model"] == "demo" else str(path)
    return {"name": entry["name"], "model": model, "label": label, "model_sha256": model_sha256}


def _classifier_entries(value: Any, recipe_dir: Path) -> list[dict[str, str]]:
    """The `[[classifiers]]` array of a recipe file, each entry checked, names unique."""
    if not isinstance(value, list) or not all(isinstance(entry, dict) for entry in value):
        raise RecipeError("recipe key 'classifiers' must be an array of tables: [[classifiers]]")
    entries = [
        _classifier_entry(entry, recipe_dir, f"[[classifiers]] #{number}")
        for number, entry in enumerate(value, start=1)
    ]
    names = [entry["name"] for entry in entries]
    for name in names:
        if names.count(name) > 1:
            raise RecipeError(f"[[classifiers]]: the name {name!r} is given twice; names must be unique")
    return entries


def load_recipe(name_or_path: str = "fineweb", overrides: list[str] | None = None) -> Recipe:
    """Load a preset or TOML file, resolve `extends`, apply `section.key=value` overrides, check and
    complete the `[[classifiers]]` (the file's own, else its parent's; never merged entry by entry)."""
    path = _recipe_file(name_or_path)
    document = _read_toml(path)
    classifiers = document.pop("classifiers", None)
    classifiers_dir = Path(str(path)).parent
    parent = document.pop("extends", None)
    if parent is not None:
        parent_path = _recipe_file(parent)
        base = _read_toml(parent_path)
        base.pop("extends", None)
        inherited = base.pop("classifiers", None)
        if classifiers is None:
            classifiers, classifiers_dir = inherited, Path(str(parent_path)).parent
        document = _merge(base, document)
    for override in overrides or []:
        document = _merge(document, _parse_override(override))
    name = str(document.pop("name", Path(name_or_path).stem))
    validate(document)
    if classifiers is not None and (entries := _classifier_entries(classifiers, classifiers_dir)):
        document["classifiers"] = entries  # absent when empty: the recipe and its sha256 stay the same
    return Recipe(name=name, tables=document)


def latest_ingest_recipe(root: str, s3: S3Options) -> dict[str, Any] | None:
    """{sha256, recipe, run} of the newest `tokenmill ingest` run record under ROOT; None when ROOT has
    none (a Parquet dataset made elsewhere)."""
    runs = [uri for uri in list_files(join(root, "runs"), s3) if uri.rsplit("/", 1)[-1].startswith("ingest-")]
    if not runs:
        return None
    record = json.loads(read_bytes(max(runs), s3))
    return {"sha256": record["recipe_sha256"], "recipe": record["recipe"], "run": max(runs)}
