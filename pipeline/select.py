"""Selection by a score column: which documents to keep, their quality buckets and the stage's stats,
as plain arithmetic on counts and ranks. The Spark side (jobs/stages/select.py) sorts and counts.

One total order decides everything, the selection order: score descending, then id ascending. Ties in
score are broken by the smaller id, so every selection is a prefix of that order and keeps exactly the
count it decides, whatever the ties and however the data is partitioned.

- `--keep-top F` keeps the first round(F * n) of the n documents that have a score (halves round up):
  the achieved fraction is within 0.5 / n of F, and the ranks come from an exact sort, so there is no
  quantile error beyond that rounding.
- `--min-score X` keeps every document whose score is at least X (also a prefix of the order).
- `--buckets N` cuts the kept prefix into N runs whose sizes differ by at most one; bucket N-1 holds the
  highest scores, 0 the lowest.

A document without a score (null or NaN) cannot be ranked; it is removed with reason `no_score`.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa

from tokenmill.pipeline.errors import UserError

SCORE_PREFIX = "score_"
BUCKET_COLUMN = "quality_bucket"
HISTOGRAM_BINS = 50
NO_SCORE, BELOW_THRESHOLD = "no_score", "below_threshold"
TIE_BREAK = "equal scores: the smaller id ranks higher"
QUANTILE_METHOD = "exact: a global sort of (score, id)"


def check_rule(keep_top: float | None, min_score: float | None) -> None:
    """Exactly one rule, and a value it can use."""
    if (keep_top is None) == (min_score is None):
        raise UserError("select: give exactly one of --keep-top FRACTION and --min-score X")
    if keep_top is not None and not 0 < keep_top <= 1:
        raise UserError(f"--keep-top {keep_top}: give a fraction above 0 and at most 1")
    if min_score is not None and not math.isfinite(min_score):
        raise UserError(f"--min-score {min_score}: give a finite score")


def check_score_column(schema: pa.Schema, by: str, where: str) -> None:
    """`by` names a numeric score_<name> column of the dataset, which has ids to break ties with."""
    if not by.startswith(SCORE_PREFIX):
        raise UserError(f"--by {by}: select ranks by a score column, named {SCORE_PREFIX}<name>")
    if by not in schema.names:
        scores = [name for name in schema.names if name.startswith(SCORE_PREFIX)]
        found = f"its score columns: {', '.join(scores)}" if scores else "it has no score column"
        raise UserError(
            f"select: {where} has no column {by} ({found}); name the classifier in the recipe's "
            "[[classifiers]] and ingest again"
        )
    kind = schema.field(by).type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise UserError(f"select: {where}: {by} is {kind}, not a number")
    if "id" not in schema.names:
        raise UserError(f"select: {where} has no id column to break ties in score with")


def top_count(fraction: float, scored: int) -> int:
    """How many of `scored` ranked documents --keep-top `fraction` keeps: the nearest whole number,
    halves up (the float product is rounded first, so 0.1 * 10,000 is 1,000, not 1,000.0000000000001)."""
    return math.floor(round(fraction * scored, 9) + 0.5)


def bucket_boundaries(kept: int, buckets: int) -> list[int]:
    """The selection-order ranks at which each lower bucket starts, highest bucket first: bucket N-1
    holds ranks [0, b1), bucket N-2 [b1, b2), ... with b_j = ceil(j * kept / N), so sizes differ by at
    most one. A boundary at or past the last kept rank starts no document's bucket and is left out;
    a kept document's bucket is N - 1 minus the number of boundaries at or before its rank."""
    ranks = (-(-j * kept // buckets) for j in range(1, buckets))
    return [rank for rank in ranks if rank < kept]


def bucket_edges(boundary_scores: list[float], buckets: int) -> list[float | None]:
    """The highest score of each bucket but the top one, bucket 0 first, from the scores found at
    bucket_boundaries' ranks (the one at the j-th boundary opens bucket N-1-j); None for an empty
    bucket. Bucket b + 1 holds no score below bucket b's highest; equal scores are split by id."""
    edges: list[float | None] = [None] * (buckets - 1)
    for j, score in enumerate(boundary_scores, start=1):
        edges[buckets - 1 - j] = score
    return edges


def histogram_edges(low: float, high: float, bins: int = HISTOGRAM_BINS) -> list[float]:
    """Equal-width bin edges over [low, high]; one value alone still gets a range of width 1."""
    if high <= low:
        high = low + 1.0
    return [low + (high - low) * index / bins for index in range(bins + 1)]


def selection_stats(
    *,
    by: str,
    keep_top: float | None,
    min_score: float | None,
    threshold: float | None,
    docs_in: int,
    kept: int,
    removed: dict[str, int],
    ties: dict[str, int],
    buckets: int | None,
    bucket_edges: list[float | None],
    bucket_sizes: list[int],
    histogram: dict[str, list[Any]],
) -> dict[str, Any]:
    """stats/select.json: the rule and what it did. `kept` counts the written output and `removed` the
    input, so `balanced` (docs_in = kept + removed) checks that no document was lost or duplicated."""
    scored = docs_in - removed[NO_SCORE]
    return {
        "by": by,
        "rule": "keep_top" if keep_top is not None else "min_score",
        "keep_top": keep_top,
        "min_score": min_score,
        "threshold": threshold,
        "tie_break": TIE_BREAK,
        "requested_fraction": keep_top,
        "achieved_fraction": kept / scored if scored else None,
        "achieved_fraction_of_input": kept / docs_in if docs_in else None,
        "quantile_method": QUANTILE_METHOD,
        "quantile_error_documents": 0,
        "docs_in": docs_in,
        "scored": scored,
        "kept": kept,
        "removed": removed,
        "threshold_ties": ties,
        "buckets": buckets,
        "bucket_edges": bucket_edges,
        "bucket_sizes": bucket_sizes,
        "histogram": histogram,
        "balanced": docs_in == kept + sum(removed.values()),
    }


def describe_rule(stats: dict[str, Any]) -> str:
    """The rule of stats/select.json as it was given: --keep-top 0.1, --min-score 0.8."""
    rule = stats["rule"]
    return f"--{rule.replace('_', '-')} {stats[rule]:g}"


def format_table(stats: dict[str, Any]) -> str:
    rule = describe_rule(stats)
    threshold = "none" if stats["threshold"] is None else f"{stats['threshold']:.6g}"
    achieved = stats["achieved_fraction"]
    rows = [
        ("documents in", f"{stats['docs_in']:,}"),
        *((f"removed: {reason}", f"{count:,}") for reason, count in stats["removed"].items()),
        ("kept", f"{stats['kept']:,}"),
        (f"{stats['by']} threshold ({rule})", threshold),
        ("kept fraction of scored", "–" if achieved is None else f"{achieved:.6f}"),
    ]
    if stats["buckets"]:
        rows.append(
            (f"{stats['buckets']} quality buckets", " ".join(f"{n:,}" for n in stats["bucket_sizes"]))
        )
    return "\n".join(f"{label:<40}{value:>20}" for label, value in rows)
