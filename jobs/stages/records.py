"""What every stage leaves about a run: ROOT/stats/<stage>.json and a run record ROOT/runs/<stage>-<time>.json
(settings, recipe, package versions, inputs, counts, seconds).

Both are read by people and shared, so every URI in them is redacted: inputs, endpoints and error
messages keep no userinfo and no presigned URL's credentials."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

from tokenmill.pipeline.recipe import Recipe
from tokenmill.pipeline.storage import S3Options, join, write_atomic
from tokenmill.pipeline.storage.uri import redact_text

PACKAGES = [
    "tokenmill",
    "pyspark",
    "warcio",
    "trafilatura",
    "fasttext-numpy2-wheel",
    "tiktoken",
    "pyarrow",
    "boto3",
]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _redacted(value: Any) -> Any:
    """`value` (JSON-like) with every URI in its strings redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(item) for item in value]
    return value


def write_json(uri: str, value: Any, s3: S3Options) -> None:
    write_atomic(uri, json.dumps(_redacted(value), indent=1).encode(), s3)


def write_stats(root: str, stage: str, stats: dict[str, Any], s3: S3Options) -> None:
    write_json(join(root, "stats", f"{stage}.json"), stats, s3)


def write_run_record(
    root: str,
    stage: str,
    settings: Any,
    stats: dict[str, Any],
    s3: S3Options,
    recipe: Recipe | None = None,
    inputs: list[str] | None = None,
) -> None:
    """ROOT/runs/<stage>-<UTC time>.json; the newest ingest record is the recipe later stages record."""
    now = datetime.now(timezone.utc)
    record: dict[str, Any] = {
        "job": stage,
        "finished": now.isoformat(timespec="seconds"),
        "arguments": dataclasses.asdict(settings),
        "versions": versions(),
        "counts": stats,
    }
    if recipe is not None:
        record["recipe"] = json.loads(recipe.to_json())
        record["recipe_sha256"] = recipe.sha256
    if inputs is not None:
        record["inputs"] = inputs
    write_json(join(root, "runs", f"{stage}-{now.strftime('%Y%m%dT%H%M%S')}.json"), record, s3)


class Timings:
    """Wall seconds per phase of a stage, kept in its stats (the benches and the report read them)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        clock = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - clock, 3)

    def total(self) -> float:
        return round(time.perf_counter() - self.started, 3)
