"""FineWeb's URL filter: drop adult and spam pages by their URL alone, before anything is extracted.

A page goes when its registered domain or full host name is blocklisted, its exact URL is, one of its
URL tokens is a hard banned word, enough of them are soft banned words, or its normalized URL contains
a banned subword. Small lists ship in the lists/ folder beside this module; recipes add their own
files or directories.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ahocorasick
import tldextract

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters.rules import Rule
from tokenmill.pipeline.recipe import RecipeError, table_config

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# Read through importlib.resources, so the lists load when the code ships as a zip (spark-submit --py-files).
BUNDLED_LISTS = resources.files("tokenmill.pipeline.ingest.filters") / "lists"
# List file name -> whether its entries are normalized (word lists) or taken as-is (domains, URLs).
LIST_FILES = {
    "domains.txt": False,
    "urls.txt": False,
    "banned_words.txt": True,
    "soft_banned_words.txt": True,
    "banned_subwords.txt": True,
}

_NON_ALNUM = re.compile(r"[^a-zA-Z0-9]+")


def normalize(text: str) -> str:
    """Only ASCII letters and digits, lowercased: how word lists and URLs are compared."""
    return _NON_ALNUM.sub("", text).lower()


@lru_cache(maxsize=1)
def tld_extractor() -> tldextract.TLDExtract:
    """One extractor per process, on tldextract's bundled public-suffix snapshot: never the network."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def read_list(path: Traversable) -> set[str]:
    """A list file's entries: one per line, `#` lines are comments, blank entries are skipped."""
    do_normalize = LIST_FILES[path.name]
    entries = set()
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("#"):
                continue
            entry = normalize(line) if do_normalize else line.strip()
            if entry:
                entries.add(entry)
    return entries


def list_files(path: Traversable) -> list[Traversable]:
    """The list files a recipe path stands for: the file itself, or the known lists in a directory."""
    if path.is_dir():
        children = list(path.iterdir())
        files = sorted((child for child in children if child.name in LIST_FILES), key=lambda c: c.name)
        strays = sorted(c.name for c in children if c.name.endswith(".txt") and c.name not in LIST_FILES)
        if strays or not files:
            raise RecipeError(
                f"url list directory {path} must hold only lists named {sorted(LIST_FILES)}"
                + (f"; unknown: {strays}" if strays else "; it holds none")
            )
        return files
    if not path.is_file():
        raise RecipeError(f"url list {path} does not exist")
    if path.name not in LIST_FILES:
        raise RecipeError(f"url list {path}: the file name must be one of {sorted(LIST_FILES)}")
    return [path]


@dataclass(frozen=True)
class URLConfig:
    soft_word_threshold: int
    use_bundled_lists: bool
    extra_lists: Sequence[str]


class URLFilter:
    name = "url"
    signal_names: tuple[str, ...] = ()
    # soft_word_threshold limits a count that no column keeps; the rest choose the lists.
    rules: tuple[Rule, ...] = ()
    settings = ("soft_word_threshold", "use_bundled_lists", "extra_lists")

    def __init__(self, config: URLConfig):
        self.config = config
        lists: dict[str, set[str]] = {name: set() for name in LIST_FILES}
        paths: list[Traversable] = [BUNDLED_LISTS] if config.use_bundled_lists else []
        paths += [Path(extra) for extra in config.extra_lists]
        for path in paths:
            for file in list_files(path):
                lists[file.name] |= read_list(file)
        self.domains = frozenset(lists["domains.txt"])
        self.urls = frozenset(lists["urls.txt"])
        self.banned_words = frozenset(lists["banned_words.txt"])
        self.soft_banned_words = frozenset(lists["soft_banned_words.txt"])
        self.subwords = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        for index, subword in enumerate(sorted(lists["banned_subwords.txt"])):
            self.subwords.add_word(subword, index)
        if len(self.subwords):
            self.subwords.make_automaton()

    @classmethod
    def from_section(cls, section: dict[str, Any], all_signals: bool = False) -> URLFilter:
        return cls(table_config(URLConfig, section, "url"))

    def __call__(self, doc: Document) -> str | None:
        url = doc.url
        parts = tld_extractor()(url)
        if parts.top_domain_under_public_suffix in self.domains:
            return "domain"
        if parts.fqdn in self.domains:
            return "subdomain"
        if url in self.urls:
            return "url"
        url_words = set(_NON_ALNUM.split(url))
        if not self.banned_words.isdisjoint(url_words):
            return "hard_blacklisted"
        if len(self.soft_banned_words & url_words) >= self.config.soft_word_threshold:
            return "soft_blacklisted"
        if len(self.subwords) and next(self.subwords.iter(normalize(url)), None) is not None:
            return "blacklisted_subword"
        return None
