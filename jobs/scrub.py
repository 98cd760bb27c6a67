"""Scrub: PII replacement alone, on any Parquet dataset with `id` and `text`.

    tokenmill scrub --input DATASET -o OUT [--phones] [--master URL]
    spark-submit jobs/scrub.py --input DATASET -o OUT ...

The same columns come out, `text` scrubbed, plus `pii_email`, `pii_ip`, `pii_phone`: the replacements
made in each document. OUT is replaced as a whole on every run (Spark's job commit).
"""

from __future__ import annotations

import argparse
import sys

from pyspark.sql import functions as F

from tokenmill.jobs.dedup import scrub_frame
from tokenmill.pipeline.dedup.keys import PII_KINDS
from tokenmill.pipeline.dedup.pii import PIIConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="DATASET", help="Parquet with id and text")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="where the scrubbed Parquet goes"
    )
    parser.add_argument("--phones", action="store_true", help="also replace phone numbers")
    parser.add_argument(
        "--master", default=None, help="Spark master URL (default: spark-submit's, else local[*])"
    )


def run(args: argparse.Namespace) -> int:
    from tokenmill.jobs.spark.session import build_session

    spark = build_session(args.master, app_name="tokenmill-scrub")
    docs = spark.read.parquet(args.input)
    if missing := {"id", "text"} - set(docs.columns):
        raise SystemExit(f"scrub: {args.input} lacks the columns {sorted(missing)}")
    scrub_frame(docs, PIIConfig(phones=args.phones)).write.mode("overwrite").parquet(args.output)
    totals = (
        spark.read.parquet(args.output).agg(*[F.sum(f"pii_{kind}").alias(kind) for kind in PII_KINDS]).first()
    )
    print(
        "scrub: replaced "
        + ", ".join(f"{totals[kind] or 0:,} {kind}" for kind in PII_KINDS)
        + f" -> {args.output}"
    )
    return 0


if __name__ == "__main__":  # spark-submit jobs/scrub.py ...: the same parser as `tokenmill scrub`
    from tokenmill.jobs.cli import main

    sys.exit(main(["scrub", *sys.argv[1:]]))
