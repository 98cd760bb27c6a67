"""Select: deduplicated documents -> the best of them by a classifier's score -> ROOT/selected.

    tokenmill select -o ROOT --by score_<name> (--keep-top FRACTION | --min-score X) [--buckets N]
                     [--input DATASET]
    spark-submit jobs/selection.py -o ROOT ...

Input: ROOT/final from `tokenmill dedup` (or --input), whose documents carry `score_<name>` from
ingest's [[classifiers]]. The rule (`pipeline.select`): --keep-top keeps round(F * n) of the n scored
documents, the highest scores first and, among equal scores, the smaller id first; --min-score keeps
score >= X. Documents without a score are removed and counted (`no_score`).

Quantiles are exact, not estimated (the quantile error is 0 documents):
1. ranks: the (score, id) pairs alone are range-partitioned in the selection order and sorted within
   each partition; the partitions' sizes give every partition its first global rank, and one pass picks
   the pairs at the wanted ranks (the last kept document, the bucket boundaries). Only those pairs reach
   the driver, and no partition is gathered in one place: the cost is one shuffle of two columns.
2. select: a filter, (score, id) at or before the last kept pair, and with --buckets N a
   `quality_bucket` column (0 lowest .. N-1 highest) from the boundary pairs: equal-count buckets of
   the kept documents, sizes within one of each other.
3. write: ROOT/selected (the input's columns, plus quality_bucket with --buckets), then
   stats/select.json (threshold, requested and achieved fraction, counts by reason, bucket edges and
   sizes, a histogram of the score kept vs removed for the report) and the completion marker
   ROOT/selected/_COMPLETE.json, last, with the fingerprint of the input's content and the settings.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import TaskContext
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StructField, StructType

from tokenmill.jobs.spark.datasets import check_output_dataset, read_dataset, write_dataset
from tokenmill.jobs.spark.progress import StageProgress
from tokenmill.jobs.stages.records import Timings, write_run_record, write_stats
from tokenmill.jobs.stages.settings import SparkSettings, option
from tokenmill.pipeline.completion import Completion, fingerprint
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.select import (
    BELOW_THRESHOLD,
    BUCKET_COLUMN,
    NO_SCORE,
    bucket_boundaries,
    bucket_edges,
    check_rule,
    check_score_column,
    format_table,
    histogram_edges,
    selection_stats,
    top_count,
)
from tokenmill.pipeline.storage import content_fingerprint, join
from tokenmill.pipeline.storage.parquet import committed_files, read_schema
from tokenmill.pipeline.storage.roots import check_writable_root

SUMMARY = "final documents -> the top fraction (or score >= X) by a classifier score, with quality buckets"

Pair = tuple[float, Any]  # (score, id): a position in the selection order


@dataclass(frozen=True, kw_only=True)
class SelectSettings(SparkSettings):
    output: str = option(help="run root (local path or s3://)", flags=("-o", "--output"), metavar="ROOT")
    input: str | None = option(
        None, "Parquet with id and the score column (default ROOT/final)", metavar="DATASET"
    )
    by: str | None = option(None, "the score column to select by (required)", metavar="score_<name>")
    keep_top: float | None = option(
        None, "keep this fraction of the scored documents, highest scores first", metavar="FRACTION"
    )
    min_score: float | None = option(None, "keep the documents whose score is at least X", metavar="X")
    buckets: int | None = option(
        None, f"add {BUCKET_COLUMN}: N equal-count buckets of the kept documents by score", metavar="N"
    )

    def __post_init__(self) -> None:
        if self.by is None:
            raise UserError("select: give --by score_<name>, the score column to select by")
        check_rule(self.keep_top, self.min_score)
        if self.buckets is not None and self.buckets < 1:
            raise UserError(f"--buckets {self.buckets}: give at least 1 bucket")

    @property
    def source(self) -> str:
        return self.input or join(self.output, "final")


def selected_dataset(root: str) -> str:
    return join(root, "selected")


def check_select_output(settings: SelectSettings) -> None:
    """The root is writable and ROOT/selected is select's to rewrite, apart from the input."""
    check_writable_root(settings.output, settings.s3)
    check_output_dataset(selected_dataset(settings.output), settings.s3, "select", [settings.source])


def check_select(settings: SelectSettings) -> None:
    """As check_select_output, and the input exists with a numeric --by column and ids (one footer read)."""
    check_select_output(settings)
    files = committed_files(settings.source, settings.s3)
    if not files:
        raise UserError(
            f"select: no Parquet files under {settings.source}; run `tokenmill dedup` first or check --input"
        )
    check_score_column(read_schema(files[0], settings.s3), settings.by, settings.source)


# ---- 1. ranks -----------------------------------------------------------------------------------------


def _order() -> list[Column]:
    return [F.col("score").desc(), F.col("id").asc()]


def pairs_at(scores: DataFrame, ranks: Sequence[int]) -> list[Pair]:
    """The (score, id) at each 0-based rank of the selection order of `scores` (columns score, id)."""
    if not ranks:
        return []
    spark = scores.sparkSession
    partitions = max(spark.sparkContext.defaultParallelism, scores.rdd.getNumPartitions())
    ranged = scores.repartitionByRange(partitions, *_order()).sortWithinPartitions(*_order())
    ranged = ranged.localCheckpoint()  # the sizes and the pass below see the same partitions
    sizes = dict(ranged.groupBy(F.spark_partition_id()).count().collect())
    first_rank, position = {}, 0
    for part in range(ranged.rdd.getNumPartitions()):
        first_rank[part] = position
        position += sizes.get(part, 0)
    wanted = np.array(sorted(set(ranks)), dtype=np.int64)

    def pick(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        rank = first_rank[TaskContext.get().partitionId()]
        for batch in batches:
            positions = np.arange(rank, rank + batch.num_rows, dtype=np.int64)
            rank += batch.num_rows
            hit = np.isin(positions, wanted)
            if hit.any():
                yield batch.filter(pa.array(hit)).append_column("rank", pa.array(positions[hit]))

    schema = StructType([*ranged.schema.fields, StructField("rank", LongType())])
    found = {row["rank"]: (row["score"], row["id"]) for row in ranged.mapInArrow(pick, schema).collect()}
    return [found[rank] for rank in ranks]


# ---- 2. select ----------------------------------------------------------------------------------------


def scored(score: Column) -> Column:
    """Whether a document has a score to rank: not null, not NaN."""
    return score.isNotNull() & ~F.isnan(score)


def ahead_of(score: Column, pair: Pair, inclusive: bool) -> Column:
    """Whether a document ranks before `pair` in the selection order (or is `pair`, when inclusive)."""
    value, doc_id = pair
    same_score = (F.col("id") <= doc_id) if inclusive else (F.col("id") < doc_id)
    return (score > value) | ((score == value) & same_score)


def bucket_column(score: Column, boundaries: list[Pair], buckets: int) -> Column:
    """N - 1 minus the boundaries at or before the document (`pipeline.select.bucket_boundaries`)."""
    passed = [F.when(ahead_of(score, pair, inclusive=False), 0).otherwise(1) for pair in boundaries]
    return (F.lit(buckets - 1) - sum(passed, F.lit(0))).cast("int")


def score_counts(
    docs: DataFrame, score: Column, keep: Column, edges: list[float], threshold: float | None
) -> dict[str, Any]:
    """One pass over the input: documents without a score, documents below the threshold, the score's
    histogram over `edges` (none without a scored document), kept vs removed, and how the documents
    at the threshold's very score were split by the tie-break."""
    bins = max(len(edges) - 1, 0)
    has_score = scored(score)
    bin_ = F.lit(None)
    if bins > 0:
        raw = F.floor((score - edges[0]) / (edges[-1] - edges[0]) * bins)
        bin_ = F.when(has_score, F.least(F.greatest(raw, F.lit(0)), F.lit(bins - 1)).cast("int"))
    at_threshold = (
        F.lit(False) if threshold is None else F.coalesce(has_score & (score == threshold), F.lit(False))
    )
    rows = docs.groupBy(bin_.alias("bin"), keep.alias("kept"), at_threshold.alias("tie")).count().collect()
    counts: dict[str, Any] = {
        "docs_in": 0,
        "removed": {NO_SCORE: 0, BELOW_THRESHOLD: 0},
        "ties": {"documents": 0, "kept": 0},
        "histogram": {"edges": edges, "kept": [0] * bins, "removed": [0] * bins},
    }
    for row in rows:
        counts["docs_in"] += row["count"]
        if row["bin"] is None:
            counts["removed"][NO_SCORE] += row["count"]
            continue
        group = "kept" if row["kept"] else "removed"
        counts["histogram"][group][row["bin"]] += row["count"]
        if not row["kept"]:
            counts["removed"][BELOW_THRESHOLD] += row["count"]
        if row["tie"]:
            counts["ties"]["documents"] += row["count"]
            counts["ties"]["kept"] += row["count"] if row["kept"] else 0
    return counts


# ---- the stage ----------------------------------------------------------------------------------------


def run_select(spark: SparkSession, settings: SelectSettings) -> dict[str, Any]:
    """ROOT/selected and stats/select.json; skipped when the marker is current."""
    check_select(settings)
    s3, output = settings.s3, selected_dataset(settings.output)
    completion = Completion(join(output, "_COMPLETE.json"), s3)
    print_ = fingerprint(input=content_fingerprint(settings.source, s3), settings=settings.output_settings())
    if (record := completion.current(print_)) is not None:
        print(f"select: {output} is already selected for these inputs and settings; nothing to do")
        return record["stats"]
    with StageProgress(spark, "select"):
        stats = _select(spark, settings, completion, print_)
    write_stats(settings.output, "select", stats, s3)
    write_run_record(settings.output, "select", settings, stats, s3)
    print(format_table(stats))
    if not stats["balanced"]:
        print("ACCOUNTING ERROR: docs in != kept + removed", file=sys.stderr)
    return stats


def _select(
    spark: SparkSession, settings: SelectSettings, completion: Completion, print_: str
) -> dict[str, Any]:
    s3, source, output = settings.s3, settings.source, selected_dataset(settings.output)
    timings = Timings()
    score = F.col(settings.by).cast("double")
    scores = read_dataset(spark, source, s3, ["id", settings.by]).select("id", score.alias("score"))
    scores = scores.where(scored(F.col("score")))

    with timings.phase("ranks"):
        totals = [F.count("*").alias("scored"), F.min("score").alias("low"), F.max("score").alias("high")]
        if settings.min_score is not None:
            totals.append(F.count_if(F.col("score") >= settings.min_score).alias("reaching"))
        summary = scores.agg(*totals).first()
        if settings.keep_top is not None:
            kept = top_count(settings.keep_top, summary["scored"])
        else:
            kept = summary["reaching"]
        boundary_ranks = bucket_boundaries(kept, settings.buckets) if settings.buckets else []
        last_rank = [kept - 1] if settings.keep_top is not None and kept else []
        found = pairs_at(scores, [*last_rank, *boundary_ranks])
        boundaries = found[len(last_rank) :]

    if settings.keep_top is not None:
        keep = ahead_of(score, found[0], inclusive=True) if last_rank else F.lit(False)
        threshold = found[0][0] if last_rank else None
    else:
        keep, threshold = score >= settings.min_score, settings.min_score
    keep = F.coalesce(scored(score) & keep, F.lit(False))

    with timings.phase("counts"):
        edges = []
        if summary["scored"]:
            marks = [] if threshold is None else [threshold]
            edges = histogram_edges(min([summary["low"], *marks]), max([summary["high"], *marks]))
        docs = read_dataset(spark, source, s3, ["id", settings.by])
        counts = score_counts(docs, score, keep, edges, threshold)

    completion.begin()  # from here until the marker is written, ROOT/selected is not complete
    with timings.phase("select_and_write"):
        selected = read_dataset(spark, source, s3).where(keep)
        if settings.buckets:
            selected = selected.withColumn(BUCKET_COLUMN, bucket_column(score, boundaries, settings.buckets))
        write_dataset(selected, output, s3, writer="select")
        written = read_dataset(spark, output, s3)
        bucket_sizes, edges_between = [], []
        if settings.buckets:
            sizes = dict(written.groupBy(BUCKET_COLUMN).count().collect())
            bucket_sizes = [sizes.get(bucket, 0) for bucket in range(settings.buckets)]
            edges_between = bucket_edges([value for value, _ in boundaries], settings.buckets)

    stats = selection_stats(
        by=settings.by,
        keep_top=settings.keep_top,
        min_score=settings.min_score,
        threshold=threshold,
        docs_in=counts["docs_in"],
        kept=written.count(),
        removed=counts["removed"],
        ties=counts["ties"],
        buckets=settings.buckets,
        bucket_edges=edges_between,
        bucket_sizes=bucket_sizes,
        histogram=counts["histogram"],
    )
    stats["seconds"] = {**timings.seconds, "total": timings.total()}
    if stats["balanced"]:
        completion.commit(print_, {"stats": stats})
    return stats
