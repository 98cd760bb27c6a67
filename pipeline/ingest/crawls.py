"""Common Crawl's list of crawls (`collinfo.json`), and which of them a scheduled ROOT has processed.

Common Crawl publishes every crawl at https://index.commoncrawl.org/collinfo.json, newest first:
`{"id": "CC-MAIN-2024-22", "name": "May 2024 Index", "timegate": ..., "cdx-api": ..., "from": ...,
"to": ...}`. A monthly job reads it to find the crawl to run (`latest`, or a named one) and the crawls a
ROOT does not have yet. Each crawl gets its own run root, `ROOT/crawls/<id>/`, and counts as processed
once its tokens are complete: a token set's `manifest.json` is written last, so its presence means the
whole chain (ingest, dedup, tokenize) finished for that crawl.

The three ARC-era crawls (CC-MAIN-2008-2009, CC-MAIN-2009-2010, CC-MAIN-2012) have no weekly id and no
WARC manifest; they are left out. Any other entry without a `CC-MAIN-YYYY-WW` id is an error, because
a changed format must not silently become an empty schedule.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options, join, list_files, read_bytes

DEFAULT_INDEX = "https://index.commoncrawl.org/collinfo.json"
CRAWL_ID = re.compile(r"CC-MAIN-(\d{4})-(\d{2})")
_LEGACY_ID = re.compile(r"CC-MAIN-\d{4}(-\d{4})?")


class CrawlIndexError(UserError):
    """An index that cannot be read as Common Crawl's collinfo.json, or a crawl it does not list."""


@dataclass(frozen=True)
class Crawl:
    id: str
    name: str
    start: str  # collinfo's "from" / "to" (ISO timestamps; empty where the index has none)
    end: str

    @property
    def week(self) -> tuple[int, int]:
        """(year, ISO week) from the id: the order of crawls, whatever order the index lists them in."""
        year, week = CRAWL_ID.fullmatch(self.id).groups()
        return int(year), int(week)


def parse_index(data: bytes, source: str) -> list[Crawl]:
    """The crawls of a collinfo.json document, newest first."""
    try:
        entries = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CrawlIndexError(f"{source}: not JSON ({error})") from None
    if not isinstance(entries, list):
        raise CrawlIndexError(f"{source}: expected a JSON list of crawls, got {type(entries).__name__}")
    crawls = []
    for position, entry in enumerate(entries):
        crawl_id = entry.get("id") if isinstance(entry, dict) else None
        if isinstance(crawl_id, str) and _LEGACY_ID.fullmatch(crawl_id) and not CRAWL_ID.fullmatch(crawl_id):
            continue
        if not isinstance(crawl_id, str) or not CRAWL_ID.fullmatch(crawl_id):
            raise CrawlIndexError(f"{source}: entry {position} has no CC-MAIN-YYYY-WW id: {entry!r:.200}")
        crawls.append(
            Crawl(crawl_id, str(entry.get("name", "")), str(entry.get("from", "")), str(entry.get("to", "")))
        )
    if not crawls:
        raise CrawlIndexError(f"{source}: lists no crawls")
    return sorted(crawls, key=lambda crawl: crawl.week, reverse=True)


def load_index(uri: str, s3: S3Options) -> list[Crawl]:
    """Read a collinfo.json from a local path, an http(s):// URL or s3://."""
    try:
        data = read_bytes(uri, s3)
    except OSError as exc:  # a missing file, no route to the index server, a refused connection
        raise CrawlIndexError(f"{uri}: cannot be read ({exc})") from None
    return parse_index(data, uri)


def resolve(crawls: list[Crawl], name: str) -> Crawl:
    """'latest' is the newest crawl; otherwise the crawl with that id."""
    if name == "latest":
        return crawls[0]
    for crawl in crawls:
        if crawl.id == name:
            return crawl
    raise CrawlIndexError(
        f"no crawl {name!r} in the index (newest: {crawls[0].id}); use latest or CC-MAIN-YYYY-WW"
    )


def warc_manifest(crawl: Crawl) -> str:
    """The crawl's WARC list, relative to the Common Crawl bucket (resolved against --cc-base)."""
    return f"crawl-data/{crawl.id}/warc.paths.gz"


def crawl_root(root: str, crawl: Crawl) -> str:
    """Where one crawl's run writes: ingest, dedup and tokenize all use this as their ROOT."""
    return join(root, "crawls", crawl.id)


def processed(root: str, crawl: Crawl, s3: S3Options) -> bool:
    """True once a token set of this crawl is complete (its manifest.json is written last)."""
    tokens = list_files(join(crawl_root(root, crawl), "tokens"), s3)
    return any(uri.endswith("/manifest.json") for uri in tokens)


def pending(crawls: list[Crawl], root: str, s3: S3Options) -> list[Crawl]:
    """The crawls ROOT has not processed, newest first."""
    return [crawl for crawl in crawls if not processed(root, crawl, s3)]
