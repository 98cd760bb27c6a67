"""The four code folders install as `tokenmill.*`: pyproject's package list names every package folder,
so a wheel (not only the editable install) carries all of them."""

from __future__ import annotations

from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_in_pyproject():
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {f"tokenmill.{top}": top for top in ("pipeline", "jobs", "tokenizer", "trainer")}
    assert setuptools["package-dir"] == folders
    found = {
        "tokenmill." + ".".join(init.parent.relative_to(REPO).parts)
        for top in folders.values()
        for init in (REPO / top).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == found
