"""Crawls: the Common Crawl crawls an index lists, and which of them a ROOT has processed.

    tokenmill crawls [--index FILE|URL] [--root ROOT] [--s3-endpoint URL]

The index is Common Crawl's collinfo.json (default: https://index.commoncrawl.org/collinfo.json), a local
copy of it, or one on S3. With --root, each crawl is marked "processed" when ROOT/crawls/<id>/ holds a
complete token set, else "new": what `tokenmill run --crawl latest` would still have to do.
"""

from __future__ import annotations

import argparse
import sys

from tokenmill.pipeline.ingest.crawls import DEFAULT_INDEX, CrawlIndexError, load_index, processed
from tokenmill.pipeline.storage import S3Options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index", default=DEFAULT_INDEX, metavar="FILE|URL", help=f"collinfo.json (default {DEFAULT_INDEX})"
    )
    parser.add_argument(
        "--root", default=None, metavar="ROOT", help="mark the crawls this ROOT has processed"
    )
    parser.add_argument("--s3-endpoint", default=None, metavar="URL", help="S3-compatible endpoint")


def run(args: argparse.Namespace) -> int:
    s3 = S3Options(endpoint_url=args.s3_endpoint)
    try:
        crawls = load_index(args.index, s3)
    except CrawlIndexError as exc:
        raise SystemExit(f"crawls: {exc}") from None
    header = ["id", "name", "from", "to"] + (["status"] if args.root else [])
    rows = [
        [crawl.id, crawl.name, crawl.start, crawl.end]
        + ([("processed" if processed(args.root, crawl, s3) else "new")] if args.root else [])
        for crawl in crawls
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


if __name__ == "__main__":  # python jobs/crawls.py ...: the same parser as `tokenmill crawls`
    from tokenmill.jobs.cli import main

    sys.exit(main(["crawls", *sys.argv[1:]]))
