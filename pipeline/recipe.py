"""A recipe: every threshold of a run, in one TOML document that jobs read and every output records.

A recipe is a preset name (`fineweb`) or a TOML file; a file may say `extends = "fineweb"` and override
single keys, and `KEY=VALUE` overrides (`gopher_quality.min_doc_words=40`) come last.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import tomllib

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options, join, list_files, read_bytes

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

PRESETS_DIR = (
    resources.files("tokenmill.pipeline") / "presets"
)  # zip-safe: works from spark-submit --py-files
ConfigT = TypeVar("ConfigT")


class RecipeError(UserError):
    """A recipe that cannot be used: unknown preset, unknown key, wrong type."""


@dataclass(frozen=True)
class Recipe:
    name: str
    tables: dict[str, dict[str, Any]]

    def section(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.tables.get(name, {}))

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


def _read_toml(name_or_path: str) -> dict[str, Any]:
    path: Path | Traversable = Path(name_or_path)
    if not path.is_file():
        path = PRESETS_DIR / f"{name_or_path}.toml"
        if not path.is_file():
            raise RecipeError(f"no recipe file or preset named {name_or_path!r}; presets: {presets()}")
    with path.open("rb") as handle:
        return tomllib.load(handle)


def _merge(base: dict[str, Any], override: dict[str, Any], where: str = "") -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise RecipeError(f"unknown recipe key {where}{key!r}; known: {sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise RecipeError(f"recipe key {where}{key!r} must be a table")
            merged[key] = _merge(base[key], value, f"{where}{key}.")
        else:
            if isinstance(base[key], bool) != isinstance(value, bool) or (
                isinstance(base[key], (int, float)) and not isinstance(value, (int, float))
            ):
                raise RecipeError(f"recipe key {where}{key!r}: {value!r} has the wrong type")
            merged[key] = value
    return merged


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


def load_recipe(name_or_path: str = "fineweb", overrides: list[str] | None = None) -> Recipe:
    """Load a preset or TOML file, resolve `extends`, apply `section.key=value` overrides."""
    document = _read_toml(name_or_path)
    parent = document.pop("extends", None)
    if parent is not None:
        base = _read_toml(parent)
        base.pop("extends", None)
        document = _merge(base, document)
    for override in overrides or []:
        document = _merge(document, _parse_override(override))
    name = str(document.pop("name", Path(name_or_path).stem))
    return Recipe(name=name, tables=document)


def latest_ingest_recipe(root: str, s3: S3Options) -> dict[str, Any] | None:
    """{sha256, recipe, run} of the newest `tokenmill ingest` run record under ROOT; None when ROOT has
    none (a Parquet dataset made elsewhere)."""
    runs = [uri for uri in list_files(join(root, "runs"), s3) if uri.rsplit("/", 1)[-1].startswith("ingest-")]
    if not runs:
        return None
    record = json.loads(read_bytes(max(runs), s3))
    return {"sha256": record["recipe_sha256"], "recipe": record["recipe"], "run": max(runs)}
