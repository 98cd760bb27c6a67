"""Train tokenizer: byte-level BPE on the corpus, counted in Spark, merged on the driver.

    tokenmill train-tokenizer -o ROOT --vocab-size N [--input DATASET] [--name NAME] [--master URL]
    spark-submit jobs/train_tokenizer.py -o ROOT --vocab-size 32768 ...

1. count (Spark): each partition splits its texts with the pattern (GPT-4's by default) and counts the
   distinct chunks; a shuffle sums the counts (64-bit) per chunk. The corpus is never in one place, only
   the table of distinct chunks is, and that grows far slower than the corpus.
2. merge (driver): tokenizer.bpe.train_merges on the table; ties go to the smallest pair.
3. save: ROOT/tokenizer/NAME/tokenizer.tiktoken + tokenizer.json; pass that directory to
   `tokenmill tokenize --encoding`. N counts everything: 256 bytes + merges + special tokens.
"""

from __future__ import annotations

import argparse
import sys
import time

from pyspark.sql import functions as F

from tokenmill.jobs.runinfo import versions
from tokenmill.jobs.spark.session import add_cluster_arguments
from tokenmill.pipeline.storage import S3Options, join
from tokenmill.tokenizer.bpe import TrainedTokenizer, count_chunk_batches, num_merges_for, train_merges
from tokenmill.tokenizer.encodings import ENDOFTEXT, GPT4_PATTERN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", required=True, metavar="ROOT", help="run root (local path or s3://)"
    )
    parser.add_argument(
        "--vocab-size", required=True, type=int, metavar="N", help="256 bytes + merges + special tokens"
    )
    parser.add_argument(
        "--input", default=None, metavar="DATASET", help="Parquet with a text column (default ROOT/final)"
    )
    parser.add_argument("--name", default=None, help="tokenizer name (default bpe-N)")
    parser.add_argument("--pattern", default=GPT4_PATTERN, help="split regex (default: GPT-4's)")
    parser.add_argument(
        "--special",
        nargs="*",
        default=[ENDOFTEXT],
        metavar="TOKEN",
        help=f"special tokens, numbered after the merges (default {ENDOFTEXT})",
    )
    parser.add_argument(
        "--min-chunk-count",
        type=int,
        default=1,
        metavar="C",
        help="ignore chunks seen fewer than C times (default 1: exact; raise it for very large corpora)",
    )
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tokenmill.jobs.spark.session import build_session

    started = time.perf_counter()
    special = tuple(args.special)
    if ENDOFTEXT not in special:
        raise SystemExit(f"train-tokenizer: {ENDOFTEXT} must be among the special tokens (shards need it)")
    try:
        num_merges = num_merges_for(args.vocab_size, special)
    except ValueError as exc:
        raise SystemExit(f"train-tokenizer: {exc}") from None
    s3 = S3Options(endpoint_url=args.s3_endpoint)
    source = args.input or join(args.output, "final")
    name = args.name or f"bpe-{args.vocab_size}"
    pattern = args.pattern

    spark = build_session(args.master, app_name="tokenmill-train-tokenizer")
    session_at = time.perf_counter()
    docs = spark.read.parquet(source)
    if "text" not in docs.columns:
        raise SystemExit(f"train-tokenizer: {source} has no text column")

    def count(batches):
        yield from count_chunk_batches(batches, pattern)

    counted = (
        docs.select("text")
        .mapInArrow(count, "chunk binary, count long")
        .groupBy("chunk")
        .agg(F.sum("count").alias("count"))
        .where(F.col("count") >= args.min_chunk_count)
    )
    collected = counted.toArrow()  # one job, Arrow batches: the table of distinct chunks only
    table = dict(
        zip(collected.column("chunk").to_pylist(), collected.column("count").to_pylist(), strict=True)
    )
    counted_at = time.perf_counter()

    merges = train_merges(table, num_merges)
    merged_at = time.perf_counter()
    if len(merges) < num_merges:
        print(f"train-tokenizer: the corpus supports only {len(merges):,} merges of the {num_merges:,} asked")
    tokenizer = TrainedTokenizer.from_merges(name, merges, pattern, special)
    training = {
        "input": source,
        "documents": docs.count(),
        "distinct_chunks": len(table),
        "chunks": sum(table.values()),
        "min_chunk_count": args.min_chunk_count,
        "merges": len(merges),
        "seconds": {
            "session": round(session_at - started, 3),
            "count": round(counted_at - session_at, 3),
            "merge": round(merged_at - counted_at, 3),
        },
        "versions": versions(),
    }
    directory = tokenizer.save(join(args.output, "tokenizer", name), s3, extra={"training": training})
    print(
        f"train-tokenizer: {len(table):,} distinct chunks ({training['chunks']:,} in all), {len(merges):,} "
        f"merges, vocab {tokenizer.vocab_size:,}; count {training['seconds']['count']:.1f} s, "
        f"merge {training['seconds']['merge']:.1f} s"
    )
    print(f"output: {directory}  (use it as: tokenmill tokenize --encoding {directory})")
    return 0


if __name__ == "__main__":  # spark-submit jobs/train_tokenizer.py ...: the same parser as the CLI
    from tokenmill.jobs.cli import main

    sys.exit(main(["train-tokenizer", *sys.argv[1:]]))
