"""URL filter: the bundled lists, user lists (files and directories) and the order of the rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters.url import URLFilter, normalize
from tokenmill.pipeline.recipe import RecipeError, load_recipe


def url_filter(**overrides: Any) -> URLFilter:
    table = load_recipe("fineweb").section("url")
    table.pop("enabled")
    table.update(overrides)
    return URLFilter.from_section(table)


def check(url_filter: URLFilter, url: str) -> str | None:
    return url_filter(Document(id="doc", text="", url=url, date="", file_path=""))


@pytest.fixture(scope="module")
def bundled() -> URLFilter:
    return url_filter()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://www.pornhub.com/view?id=1", "domain"),  # registered domain listed: every host goes
        ("https://fr.xhamster.com/", "domain"),
        ("https://www.sex.com/", "url"),  # the exact URL is listed ...
        ("https://www.sex.com/pins", None),  # ... not the site, and one soft word is not enough
        ("https://example.com/free/porn/videos", "hard_blacklisted"),
        ("https://example.com/PORN/", None),  # URL tokens are not lowercased (as in the reference)
        ("https://example.com/pornography-history", None),  # a token, not a substring
        ("https://example.com/hot-girls/", "soft_blacklisted"),
        ("https://example.com/hot-deals/", None),
        ("https://best-FreePorn-tube.example/", "blacklisted_subword"),  # normalized: bestfreeporntube...
        ("https://en.wikipedia.org/wiki/Anarchism", None),
        ("http://192.168.0.1/index.html", None),
    ],
)
def test_bundled_lists(bundled: URLFilter, url: str, reason: str | None) -> None:
    assert check(bundled, url) == reason


def test_soft_word_threshold() -> None:
    assert check(url_filter(soft_word_threshold=2), "https://example.com/hot-deals/") is None
    assert check(url_filter(soft_word_threshold=1), "https://example.com/hot-deals/") == "soft_blacklisted"
    assert (
        check(url_filter(soft_word_threshold=2), "https://example.com/hot-hot-hot/") is None
    )  # distinct words


def write(path: Path, *lines: str) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_extra_list_directory_and_files(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    write(lists / "domains.txt", "# our blocklist", "bigcasino.net", "cams.example.org", "")
    write(lists / "urls.txt", "https://example.net/spam.html")
    write(lists / "banned_words.txt", "Jack-Pot!")  # normalized to "jackpot"
    (lists / "README.md").write_text("not a list; ignored\n")
    subwords = write(tmp_path / "banned_subwords.txt", "megaslots")
    own = url_filter(use_bundled_lists=False, extra_lists=[str(lists), str(subwords)])
    assert check(own, "https://www.bigcasino.net/") == "domain"
    assert check(own, "https://cams.example.org/live") == "subdomain"  # only that host is listed
    assert check(own, "https://www.example.org/") is None
    assert check(own, "https://example.net/spam.html") == "url"
    assert check(own, "https://example.net/spam.html?page=2") is None
    assert check(own, "https://example.net/jackpot/") == "hard_blacklisted"
    assert check(own, "https://example.net/MegaSlots2024") == "blacklisted_subword"
    assert check(own, "https://www.pornhub.com/") is None  # bundled lists off
    both = url_filter(extra_lists=[str(lists)])
    assert check(both, "https://www.pornhub.com/") == "domain"
    assert check(both, "https://www.bigcasino.net/") == "domain"


def test_bad_extra_lists(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="does not exist"):
        url_filter(extra_lists=[str(tmp_path / "missing.txt")])
    with pytest.raises(RecipeError, match="file name must be one of"):
        url_filter(extra_lists=[str(write(tmp_path / "blocklist.txt", "bigcasino.net"))])
    with pytest.raises(RecipeError, match="unknown: \\['blocklist.txt'\\]"):
        url_filter(extra_lists=[str(tmp_path)])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecipeError, match="holds none"):
        url_filter(extra_lists=[str(empty)])
    with pytest.raises(RecipeError, match="unexpected keyword argument 'bogus'"):
        url_filter(bogus=1)


def test_normalize() -> None:
    assert normalize("Hot-Girls_Live! 24/7") == "hotgirlslive247"
