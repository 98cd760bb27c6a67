"""Crawls: the Common Crawl crawls an index lists, and which of them a ROOT has processed.

    tokenmill crawls [--index FILE|URL] [--root ROOT] [--s3-endpoint URL]

The index is Common Crawl's collinfo.json (default: https://index.commoncrawl.org/collinfo.json), a local
copy of it, or one on S3. With --root, each crawl is marked "processed" when ROOT/crawls/<id>/ holds a
complete token set, else "new": what `tokenmill run --crawl latest` would still have to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenmill.jobs.stages.settings import option
from tokenmill.pipeline.ingest.crawls import DEFAULT_INDEX, load_index, processed
from tokenmill.pipeline.storage import S3Options

SUMMARY = "Common Crawl's crawls (collinfo.json), and which ones a ROOT has processed"


@dataclass(frozen=True, kw_only=True)
class CrawlsSettings:
    index: str = option(DEFAULT_INDEX, f"collinfo.json (default {DEFAULT_INDEX})", metavar="FILE|URL")
    root: str | None = option(None, "mark the crawls this ROOT has processed", metavar="ROOT")
    s3_endpoint: str | None = option(None, "S3-compatible endpoint (also AWS_ENDPOINT_URL)", metavar="URL")


def run_crawls(settings: CrawlsSettings) -> dict[str, Any]:
    s3 = S3Options(endpoint_url=settings.s3_endpoint)
    crawls = load_index(settings.index, s3)
    header = ["id", "name", "from", "to"] + (["status"] if settings.root else [])
    rows = [
        [crawl.id, crawl.name, crawl.start, crawl.end]
        + ([("processed" if processed(settings.root, crawl, s3) else "new")] if settings.root else [])
        for crawl in crawls
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return {"crawls": len(crawls)}
