"""Report: ROOT/report.html, one self-contained page about a run, from the files its jobs wrote.

    tokenmill report -o ROOT [--s3-endpoint URL]

The record funnel with drop reasons, languages, document-length and quality-signal histograms with the
recipe's thresholds, dedup cluster sizes, tokens per shard and the trainer's loss curve when ROOT has a
metrics.jsonl. Inline SVG only: no script, font or network request, so the file opens anywhere. Spark
is not needed: the Parquet columns are read with pyarrow, one file at a time.
"""

from __future__ import annotations

import argparse
import sys

from tokenmill.pipeline.report import write_report
from tokenmill.pipeline.storage import S3Options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", required=True, metavar="ROOT", help="the run's root (local or s3://)"
    )
    parser.add_argument("--s3-endpoint", default=None, metavar="URL", help="S3-compatible endpoint")


def run(args: argparse.Namespace) -> int:
    print(f"report: {write_report(args.output, S3Options(endpoint_url=args.s3_endpoint))}")
    return 0


if __name__ == "__main__":  # python jobs/report.py -o ROOT: the same parser as `tokenmill report`
    from tokenmill.jobs.cli import main

    sys.exit(main(["report", *sys.argv[1:]]))
