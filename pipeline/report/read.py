"""Reading ROOT for the report: stats JSON, run records, token manifests, trainer metrics (pretraining
and fine-tuning), the signal columns of the Parquet documents and select's score histogram, into plain
data.

Parquet is read column by column and one file at a time, never the text, so a whole crawl's report
stays small.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tokenmill.pipeline.ingest.filters import DROP_STAGES, LANGUAGE_PRECHECK, recipe_limits, signal_columns
from tokenmill.pipeline.ingest.filters.gopher_quality import GopherQualityFilter
from tokenmill.pipeline.recipe import latest_ingest_recipe, load_recipe
from tokenmill.pipeline.select import describe_rule
from tokenmill.pipeline.storage import S3Options, exists, join, list_files, read_bytes
from tokenmill.pipeline.storage.parquet import committed_files, read_table

BINS = 30
# The word count the Gopher length rules read: drawn on a log scale, in a chart of its own.
LENGTH_COLUMN = next(rule.signal for rule in GopherQualityFilter.rules if rule.key == "min_doc_words")

Lines = dict[str, list[tuple[str, float]]]  # signal column -> [(recipe key, threshold)]


def thresholds(recipe: Mapping[str, Any]) -> Lines:
    """Signal column -> [(recipe key, value)] for every rule the recipe has switched on."""
    found: Lines = {}
    for limit in recipe_limits(recipe):
        found.setdefault(limit.signal, []).append((limit.label, float(limit.value)))
    return found


# ---------------------------------------------------------------- files


def _read_json(uri: str, s3: S3Options) -> Any:
    return json.loads(read_bytes(uri, s3)) if exists(uri, s3) else None


def _parquet_files(root: str, folder: str, s3: S3Options) -> list[str]:
    return committed_files(join(root, folder), s3)


def _read_columns(uri: str, wanted: Iterable[str], s3: S3Options) -> pa.Table:
    """The wanted columns that the file has (removed/ and documents/ share most, not all); on S3 only
    the footer and those columns' bytes are fetched."""
    return read_table(uri, s3, list(wanted), missing_ok=True)


def _numeric(table: pa.Table, column: str) -> np.ndarray:
    """Finite float values of a column; absent signals (a filter the document never reached) are null."""
    if column not in table.column_names:
        return np.empty(0)
    values = table.column(column).to_numpy(zero_copy_only=False).astype(float)
    return values[np.isfinite(values)]


# ---------------------------------------------------------------- documents


@dataclass
class Histogram:
    column: str
    edges: np.ndarray
    log: bool
    kept: np.ndarray
    removed: np.ndarray


@dataclass
class Corpus:
    """What the report needs from documents/ and removed/, computed one file at a time."""

    documents: int = 0
    removed: int = 0
    languages_kept: Counter[str] = field(default_factory=Counter)
    languages_removed: Counter[str] = field(default_factory=Counter)
    histograms: dict[str, Histogram] = field(default_factory=dict)


def histogram_columns() -> list[str]:
    """The columns with a histogram, in the order of the pipeline's filters."""
    return ["language_score", *signal_columns()]


def _edges(low: float, high: float, log: bool) -> np.ndarray:
    if log:
        low = max(low, 1.0)  # word counts: a document with 0 words is drawn in the first bin
        high = max(high, low * 10)
        return np.logspace(math.log10(low), math.log10(high), BINS + 1)
    if high <= low:
        high = low + 1
    return np.linspace(low, high, BINS + 1)


def read_corpus(root: str, s3: S3Options, lines: Lines) -> Corpus:
    """Two passes over the signal columns: value ranges (thresholds included, so every line is on its
    chart), then fixed-bin counts. Memory is one file's columns, however large the run."""
    groups = {"kept": _parquet_files(root, "documents", s3), "removed": _parquet_files(root, "removed", s3)}
    columns = histogram_columns()
    ranges: dict[str, list[float]] = {}
    for files in groups.values():
        for uri in files:
            table = _read_columns(uri, columns, s3)
            for column in columns:
                values = _numeric(table, column)
                if values.size:
                    low, high = ranges.get(column, [math.inf, -math.inf])
                    ranges[column] = [min(low, values.min()), max(high, values.max())]
    corpus = Corpus()
    for column, (low, high) in ranges.items():
        marks = [value for _, value in lines.get(column, [])]
        edges = _edges(min([low, *marks]), max([high, *marks]), log=column == LENGTH_COLUMN)
        zeros = np.zeros(BINS, dtype=np.int64)
        corpus.histograms[column] = Histogram(column, edges, column == LENGTH_COLUMN, zeros, zeros.copy())
    for group, files in groups.items():
        for uri in files:
            table = _read_columns(uri, ["language", *columns], s3)
            languages = corpus.languages_kept if group == "kept" else corpus.languages_removed
            languages.update(lang or "(none)" for lang in table.column("language").to_pylist())
            if group == "kept":
                corpus.documents += table.num_rows
            else:
                corpus.removed += table.num_rows
            for column, histogram in corpus.histograms.items():
                values = np.clip(_numeric(table, column), histogram.edges[0], histogram.edges[-1])
                counts = getattr(histogram, group)
                counts += np.histogram(values, bins=histogram.edges)[0]
    return corpus


PRETRAIN, SFT = "pretrain", "sft"
SFT_DATA = "sft_data.json"


@dataclass(frozen=True)
class TrainingRun:
    """One trainer metrics.jsonl, and for a fine-tune the sft_data.json written beside it."""

    uri: str
    records: list[dict[str, Any]]
    kind: str  # PRETRAIN or SFT; files written before fine-tuning existed carry no kind: pretraining
    sft_data: dict[str, Any] | None  # conversations read, trained on, held out and skipped by reason


def metrics_files(root: str, s3: S3Options) -> list[str]:
    """Every trainer metrics.jsonl: ROOT/train/** and ROOT/sft/** first, else anywhere under ROOT."""
    found = [
        uri
        for stage in ("train", "sft")
        for uri in list_files(join(root, stage), s3)
        if uri.endswith("/metrics.jsonl")
    ]
    return found or [uri for uri in list_files(root, s3) if uri.endswith("/metrics.jsonl")]


def read_training(root: str, s3: S3Options) -> list[TrainingRun]:
    """Every trainer metrics.jsonl (`metrics_files`) with its records; a file is a fine-tune's when its
    records say kind "sft"."""
    runs = []
    for uri in metrics_files(root, s3):
        lines = read_bytes(uri, s3).decode("utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        kind = SFT if any(record.get("kind") == SFT for record in records) else PRETRAIN
        sft_data = _read_json(join(uri.rsplit("/", 1)[0], SFT_DATA), s3) if kind == SFT else None
        runs.append(TrainingRun(uri, records, kind, sft_data))
    return runs


# ---------------------------------------------------------------- the funnel


@dataclass(frozen=True)
class FunnelStep:
    stage: str
    records_in: int
    reasons: dict[str, int]

    @property
    def dropped(self) -> int:
        return sum(self.reasons.values())

    @property
    def records_out(self) -> int:
        return self.records_in - self.dropped


def _funnel_stage(stage: str, reason: str) -> str:
    return LANGUAGE_PRECHECK if stage == "language" and reason.startswith("precheck_") else stage


def funnel(
    ingest: dict[str, Any],
    dedup: dict[str, Any] | None,
    tokens: dict[str, Any] | None,
    select: dict[str, Any] | None = None,
) -> list[FunnelStep]:
    """Records in, then each stage's drops (errors counted where they happened), then dedup, select
    and tokenize. Ingest stages come in the order a record meets them; unknown ones go last."""
    by_stage: dict[str, dict[str, int]] = {}
    for label, counts in (("", ingest["dropped"]), ("error: ", ingest.get("errors", {}))):
        for key, count in counts.items():
            stage, _, reason = key.partition(":")
            by_stage.setdefault(_funnel_stage(stage, reason), {})[label + reason] = count
    order = [*DROP_STAGES, *sorted(set(by_stage) - set(DROP_STAGES))]
    steps, remaining = [], ingest["records"]
    for stage in order:
        if stage in by_stage:
            reasons = dict(sorted(by_stage[stage].items(), key=lambda item: -item[1]))
            steps.append(FunnelStep(stage, remaining, reasons))
            remaining = steps[-1].records_out
    if dedup is not None:
        kinds = ("exact_duplicates", "fuzzy_duplicates", "url_duplicates", "prior_duplicates")
        steps.append(
            FunnelStep("dedup", dedup["docs_in"], {kind: dedup[kind] for kind in kinds if dedup[kind]})
        )
    if select is not None:
        removed = {reason: count for reason, count in select["removed"].items() if count}
        steps.append(FunnelStep("select", select["docs_in"], removed))
    if tokens is not None:
        counts = tokens["counts"]
        skipped = {reason: count for reason, count in counts["skipped"].items() if count}
        steps.append(FunnelStep("tokenize", counts["documents_in"], skipped))
    return steps


# ---------------------------------------------------------------- selection


def selection_histogram(select: dict[str, Any]) -> Histogram | None:
    """stats/select.json's histogram of the --by score, kept vs removed; None when nothing had a score."""
    drawn = select["histogram"]
    if not drawn["edges"]:
        return None
    return Histogram(
        select["by"],
        np.array(drawn["edges"], dtype=float),
        False,
        np.array(drawn["kept"], dtype=np.int64),
        np.array(drawn["removed"], dtype=np.int64),
    )


def selection_lines(select: dict[str, Any]) -> list[tuple[str, float]]:
    """The threshold select applied, named by its rule, as the report's dashed line."""
    if select["threshold"] is None:
        return []
    return [(f"threshold ({describe_rule(select)})", float(select["threshold"]))]


# ---------------------------------------------------------------- the whole run


def holds_output(root: str, s3: S3Options) -> bool:
    """Whether ROOT holds anything the report shows: stats or run records of a stage, documents, token
    manifests or a trainer's metrics. Checked cheapest first: a stage's run records are a short listing."""
    sources = (
        lambda: bool(list_files(join(root, "runs"), s3)),
        lambda: bool(list_files(join(root, "stats"), s3)),
        lambda: bool(_parquet_files(root, "documents", s3)),
        lambda: any(uri.endswith("/manifest.json") for uri in list_files(join(root, "tokens"), s3)),
        lambda: bool(metrics_files(root, s3)),
    )
    return any(source() for source in sources)


@dataclass
class Run:
    """Everything the report shows about ROOT; None or empty where ROOT lacks it."""

    root: str
    ingest: dict[str, Any] | None  # stats/ingest.json
    dedup: dict[str, Any] | None  # stats/dedup.json
    select: dict[str, Any] | None  # stats/select.json
    manifests: dict[str, dict[str, Any]]  # tokenizer name -> tokens/<name>/manifest.json
    recipe: dict[str, Any]  # the newest ingest run's recipe, else the fineweb preset
    lines: Lines  # the recipe's thresholds by signal column
    corpus: Corpus
    training: list[TrainingRun]  # every metrics.jsonl: pretraining and fine-tuning
    units: list[dict[str, Any]]  # stats/units/*.json


def read_run(root: str, s3: S3Options) -> Run:
    """Everything the report shows, read from ROOT (a local path or s3://bucket/prefix)."""
    manifests = {
        uri.rsplit("/", 2)[-2]: json.loads(read_bytes(uri, s3))
        for uri in list_files(join(root, "tokens"), s3)
        if uri.endswith("/manifest.json")
    }
    run_record = latest_ingest_recipe(root, s3)
    recipe = run_record["recipe"] if run_record else None
    if recipe is None:
        recipe = {"name": "fineweb (preset: no run record)", **load_recipe("fineweb", []).tables}
    lines = thresholds(recipe)
    units = [
        json.loads(read_bytes(uri, s3))
        for uri in list_files(join(root, "stats", "units"), s3)
        if uri.endswith(".json")
    ]
    return Run(
        root=root,
        ingest=_read_json(join(root, "stats", "ingest.json"), s3),
        dedup=_read_json(join(root, "stats", "dedup.json"), s3),
        select=_read_json(join(root, "stats", "select.json"), s3),
        manifests=manifests,
        recipe=recipe,
        lines=lines,
        corpus=read_corpus(root, s3, lines),
        training=read_training(root, s3),
        units=units,
    )
