"""What every job records about a run: package versions, and the recipe the documents were made with."""

from __future__ import annotations

import json
import platform
from importlib import metadata
from typing import Any

from pipeline.storage import S3Options, join, list_files, read_bytes

PACKAGES = [
    "tokenmill",
    "pyspark",
    "warcio",
    "trafilatura",
    "fasttext-predict",
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


def latest_recipe(root: str, s3: S3Options) -> dict[str, Any] | None:
    """The recipe of the newest `tokenmill ingest` run under ROOT (None when ROOT has none, e.g. for
    a Parquet dataset made elsewhere)."""
    runs = [uri for uri in list_files(join(root, "runs"), s3) if uri.rsplit("/", 1)[-1].startswith("ingest-")]
    if not runs:
        return None
    record = json.loads(read_bytes(max(runs), s3))
    return {"sha256": record["recipe_sha256"], "recipe": record["recipe"], "run": max(runs)}
