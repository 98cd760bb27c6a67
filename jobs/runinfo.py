"""What every job records about a run: the versions of the packages it ran with."""

from __future__ import annotations

import platform
from importlib import metadata

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
