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

import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from tokenmill.jobs.spark.datasets import read_dataset
from tokenmill.jobs.stages.records import versions
from tokenmill.jobs.stages.settings import SparkSettings, option
from tokenmill.pipeline.completion import Completion, fingerprint
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import content_fingerprint, join
from tokenmill.pipeline.storage.roots import check_writable_root
from tokenmill.tokenizer.bpe import TrainedTokenizer, count_chunk_batches, num_merges_for, train_merges
from tokenmill.tokenizer.encodings import ENDOFTEXT, GPT4_PATTERN

SUMMARY = "byte-level BPE on the corpus: counted in Spark, merged on the driver"


@dataclass(frozen=True, kw_only=True)
class TrainTokenizerSettings(SparkSettings):
    output: str = option(help="run root (local path or s3://)", flags=("-o", "--output"), metavar="ROOT")
    vocab_size: int = option(help="256 bytes + merges + special tokens", metavar="N")
    input: str | None = option(None, "Parquet with a text column (default ROOT/final)", metavar="DATASET")
    name: str | None = option(None, "tokenizer name (default bpe-N)")
    pattern: str = option(GPT4_PATTERN, "split regex (default: GPT-4's)")
    special: tuple[str, ...] = option(
        (ENDOFTEXT,), f"special tokens, numbered after the merges (default {ENDOFTEXT})", metavar="TOKEN"
    )
    min_chunk_count: int = option(
        1,
        "ignore chunks seen fewer than C times (default 1: exact; raise it for very large corpora)",
        metavar="C",
    )

    def __post_init__(self) -> None:
        if ENDOFTEXT not in self.special:
            raise UserError(f"--special must include {ENDOFTEXT}: token shards start every document with it")
        try:
            num_merges_for(self.vocab_size, self.special)
        except ValueError as exc:
            raise UserError(f"--vocab-size {self.vocab_size}: {exc}") from None
        if self.min_chunk_count < 1:
            raise UserError(f"--min-chunk-count {self.min_chunk_count}: give 1 or more")

    @property
    def source(self) -> str:
        return self.input or join(self.output, "final")

    @property
    def tokenizer_name(self) -> str:
        return self.name or f"bpe-{self.vocab_size}"


def check_train_tokenizer(settings: TrainTokenizerSettings) -> None:
    check_writable_root(settings.output, settings.s3)


def run_train_tokenizer(spark: SparkSession, settings: TrainTokenizerSettings) -> dict[str, Any]:
    """ROOT/tokenizer/NAME/ (tokenizer.tiktoken, tokenizer.json); skipped when its marker is current."""
    check_train_tokenizer(settings)
    s3, source, pattern = settings.s3, settings.source, settings.pattern
    directory = join(settings.output, "tokenizer", settings.tokenizer_name)
    completion = Completion(join(directory, "_COMPLETE.json"), s3)
    stage_settings = {
        key: getattr(settings, key) for key in ("vocab_size", "pattern", "special", "min_chunk_count")
    }
    print_ = fingerprint(input=content_fingerprint(source, s3), settings=stage_settings)
    if (record := completion.current(print_)) is not None:
        print(f"train-tokenizer: {directory} is already trained on these inputs with these settings")
        return record["training"]
    started = time.perf_counter()
    docs = read_dataset(spark, source, s3)
    if "text" not in docs.columns:
        raise UserError(f"train-tokenizer: {source} has no text column")
    num_merges = num_merges_for(settings.vocab_size, settings.special)

    def count(batches):
        yield from count_chunk_batches(batches, pattern)

    counted = (
        docs.select("text")
        .mapInArrow(count, "chunk binary, count long")
        .groupBy("chunk")
        .agg(F.sum("count").alias("count"))
        .where(F.col("count") >= settings.min_chunk_count)
    )
    completion.begin()
    collected = counted.toArrow()  # one job, Arrow batches: the table of distinct chunks only
    table = dict(
        zip(collected.column("chunk").to_pylist(), collected.column("count").to_pylist(), strict=True)
    )
    counted_at = time.perf_counter()

    merges = train_merges(table, num_merges)
    merged_at = time.perf_counter()
    if len(merges) < num_merges:
        print(f"train-tokenizer: the corpus supports only {len(merges):,} merges of the {num_merges:,} asked")
    tokenizer = TrainedTokenizer.from_merges(settings.tokenizer_name, merges, pattern, settings.special)
    training = {
        "input": source,
        "documents": docs.count(),
        "distinct_chunks": len(table),
        "chunks": sum(table.values()),
        "min_chunk_count": settings.min_chunk_count,
        "merges": len(merges),
        "seconds": {"count": round(counted_at - started, 3), "merge": round(merged_at - counted_at, 3)},
        "versions": versions(),
    }
    tokenizer.save(directory, s3, extra={"training": training})
    completion.commit(print_, {"training": training})
    print(
        f"train-tokenizer: {len(table):,} distinct chunks ({training['chunks']:,} in all), {len(merges):,} "
        f"merges, vocab {tokenizer.vocab_size:,}; count {training['seconds']['count']:.1f} s, "
        f"merge {training['seconds']['merge']:.1f} s"
    )
    print(f"output: {directory}  (use it as: tokenmill tokenize --encoding {directory})")
    return training
