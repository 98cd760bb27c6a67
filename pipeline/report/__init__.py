"""The run report: ROOT/report.html, one page that says what a run did, from the files the jobs left.

It shows the record funnel through every stage with its drop reasons, the language distribution, the
document-length and quality-signal histograms with the recipe's thresholds drawn on them, the dedup
cluster sizes, the tokens per shard and, when ROOT holds a trainer's metrics.jsonl, the loss curve. A
part whose input is absent is named as absent, so a half-finished run still gets a report.

The page is self-contained: charts are inline SVG drawn here, with no script, font or request of any
kind, so it opens the same from a laptop, an S3 console download or an air-gapped cluster. Parquet is
read column by column and one file at a time, never the text, so a whole crawl's report stays small.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tokenmill.pipeline.ingest.filters import signal_columns
from tokenmill.pipeline.recipe import latest_ingest_recipe, load_recipe
from tokenmill.pipeline.storage import (
    S3Options,
    exists,
    join,
    list_files,
    local_path,
    read_bytes,
    split_s3,
    write_atomic,
)

REPORT_NAME = "report.html"
BINS = 30
MAX_LINE_POINTS = 1500  # a loss curve of a million steps is drawn from an even subset of them
MAX_UNIT_ROWS = 100
LENGTH_COLUMN = "gopher_q_n_non_symbol_words"  # the word count the Gopher length rules read

KEPT, REMOVED, VAL, TRAIN, THRESHOLD, INK, GRID = (
    "#2b6cb0",
    "#dd6b20",
    "#2f855a",
    "#2b6cb0",
    "#c53030",
    "#2d3748",
    "#e2e8f0",
)

# Ingest drop stages in the order a record meets them. The language precheck runs before extraction,
# the full language filter after it, so they are two steps of the funnel. Unknown stages go last.
FUNNEL_STAGES = (
    "read",
    "process",
    "url",
    "decode",
    "language precheck",
    "extract",
    "language",
    "gopher_repetition",
    "gopher_quality",
    "c4",
    "fineweb_quality",
)


# ---------------------------------------------------------------- thresholds from the recipe


@dataclass(frozen=True)
class Rule:
    """A recipe threshold on one signal column. `off` is the value that disables the rule."""

    column: str
    section: str
    key: str
    off: float | None = None


RULES = (
    Rule("language_score", "language", "threshold"),
    Rule(LENGTH_COLUMN, "gopher_quality", "min_doc_words", 0),
    Rule(LENGTH_COLUMN, "gopher_quality", "max_doc_words", 0),
    Rule("gopher_q_avg_word_length", "gopher_quality", "min_avg_word_length", 0),
    Rule("gopher_q_avg_word_length", "gopher_quality", "max_avg_word_length", 0),
    Rule("gopher_q_hash_word_ratio", "gopher_quality", "max_symbol_word_ratio", 0),
    Rule("gopher_q_ellipsis_word_ratio", "gopher_quality", "max_symbol_word_ratio", 0),
    Rule("gopher_q_bullet_lines_ratio", "gopher_quality", "max_bullet_lines_ratio", 0),
    Rule("gopher_q_end_ellipsis_lines_ratio", "gopher_quality", "max_ellipsis_lines_ratio", 0),
    Rule("gopher_q_alpha_words_ratio", "gopher_quality", "min_alpha_words_ratio", 0),
    Rule("gopher_q_stop_words", "gopher_quality", "min_stop_words", 0),
    Rule("gopher_rep_dup_para_frac", "gopher_repetition", "dup_para_frac", 0),
    Rule("gopher_rep_dup_para_char_frac", "gopher_repetition", "dup_para_char_frac", 0),
    Rule("gopher_rep_dup_line_frac", "gopher_repetition", "dup_line_frac", 0),
    Rule("gopher_rep_dup_line_char_frac", "gopher_repetition", "dup_line_char_frac", 0),
    Rule("c4_sentences", "c4", "min_num_sentences", -1),
    Rule("fineweb_q_line_punct_ratio", "fineweb_quality", "line_punct_thr"),
    Rule("fineweb_q_short_line_ratio", "fineweb_quality", "short_line_thr"),
    Rule("fineweb_q_char_dup_ratio", "fineweb_quality", "char_duplicates_ratio"),
    Rule("fineweb_q_new_line_ratio", "fineweb_quality", "new_line_ratio"),
)


def thresholds(recipe: dict[str, Any]) -> dict[str, list[tuple[str, float]]]:
    """Signal column -> [(recipe key, value)] for every rule the recipe has switched on."""
    found: dict[str, list[tuple[str, float]]] = {}

    def add(column: str, section: str, key: str, value: Any, off: float | None) -> None:
        if recipe.get(section, {}).get("enabled", True) and value is not None and value != off:
            found.setdefault(column, []).append((f"{section}.{key}", float(value)))

    for rule in RULES:
        add(rule.column, rule.section, rule.key, recipe.get(rule.section, {}).get(rule.key), rule.off)
    repetition = recipe.get("gopher_repetition", {})
    for kind in ("top", "dup"):
        sizes, fracs = repetition.get(f"{kind}_ngram_sizes", []), repetition.get(f"{kind}_ngram_fracs", [])
        for index, (size, frac) in enumerate(zip(sizes, fracs, strict=False)):
            column = f"gopher_rep_{kind}_{size}_gram_char_frac"
            add(column, "gopher_repetition", f"{kind}_ngram_fracs[{index}]", frac, 0)
    return found


# ---------------------------------------------------------------- reading ROOT


def _read_json(uri: str, s3: S3Options) -> Any:
    return json.loads(read_bytes(uri, s3)) if exists(uri, s3) else None


def _filesystem(uri: str, s3: S3Options) -> tuple[pafs.FileSystem, str]:
    """pyarrow's view of a file, so that only the wanted columns' pages are fetched, on S3 too."""
    if uri.startswith("s3://"):
        bucket, key = split_s3(uri)
        endpoint = s3.endpoint()
        region = "us-east-1" if endpoint else pafs.resolve_s3_region(bucket)
        scheme = endpoint.split("://", 1)[0] if endpoint else "https"
        host = endpoint.split("://", 1)[-1] if endpoint else None
        s3fs = pafs.S3FileSystem(
            endpoint_override=host, scheme=scheme, region=region, anonymous=s3.unsigned_for(bucket)
        )
        return s3fs, f"{bucket}/{key}"
    return pafs.LocalFileSystem(), str(local_path(uri))


def _parquet_files(root: str, folder: str, s3: S3Options) -> list[str]:
    return [uri for uri in list_files(join(root, folder), s3) if uri.endswith(".parquet")]


def _read_columns(uri: str, wanted: Iterable[str], s3: S3Options) -> pa.Table:
    """The wanted columns that the file has (removed/ and documents/ share most, not all)."""
    filesystem, path = _filesystem(uri, s3)
    names = set(pq.read_schema(path, filesystem=filesystem).names)
    return pq.read_table(path, columns=[name for name in wanted if name in names], filesystem=filesystem)


def _numeric(table: pa.Table, column: str) -> np.ndarray:
    """Finite float values of a column; absent signals (a filter the document never reached) are null."""
    if column not in table.column_names:
        return np.empty(0)
    values = table.column(column).to_numpy(zero_copy_only=False).astype(float)
    return values[np.isfinite(values)]


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


def _edges(low: float, high: float, log: bool) -> np.ndarray:
    if log:
        low = max(low, 1.0)  # word counts: a document with 0 words is drawn in the first bin
        high = max(high, low * 10)
        return np.logspace(math.log10(low), math.log10(high), BINS + 1)
    if high <= low:
        high = low + 1
    return np.linspace(low, high, BINS + 1)


def read_corpus(root: str, s3: S3Options, lines: dict[str, list[tuple[str, float]]]) -> Corpus:
    """Two passes over the signal columns: value ranges (thresholds included, so every line is on its
    chart), then fixed-bin counts. Memory is one file's columns, however large the run."""
    groups = {"kept": _parquet_files(root, "documents", s3), "removed": _parquet_files(root, "removed", s3)}
    columns = ["language_score", *signal_columns()]
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


def read_metrics(root: str, s3: S3Options) -> dict[str, list[dict[str, Any]]]:
    """Every trainer metrics.jsonl: ROOT/train/** first, else anywhere under ROOT. Path -> records."""
    found = [uri for uri in list_files(join(root, "train"), s3) if uri.endswith("/metrics.jsonl")]
    if not found:
        found = [uri for uri in list_files(root, s3) if uri.endswith("/metrics.jsonl")]
    metrics = {}
    for uri in found:
        lines = read_bytes(uri, s3).decode("utf-8").splitlines()
        metrics[uri] = [json.loads(line) for line in lines if line.strip()]
    return metrics


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
    return "language precheck" if stage == "language" and reason.startswith("precheck_") else stage


def funnel(
    ingest: dict[str, Any], dedup: dict[str, Any] | None, tokens: dict[str, Any] | None
) -> list[FunnelStep]:
    """Records in, then each stage's drops (errors counted where they happened), then dedup and tokenize."""
    by_stage: dict[str, dict[str, int]] = {}
    for label, counts in (("", ingest["dropped"]), ("error: ", ingest.get("errors", {}))):
        for key, count in counts.items():
            stage, _, reason = key.partition(":")
            by_stage.setdefault(_funnel_stage(stage, reason), {})[label + reason] = count
    order = [*FUNNEL_STAGES, *sorted(set(by_stage) - set(FUNNEL_STAGES))]
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
    if tokens is not None:
        counts = tokens["counts"]
        skipped = {reason: count for reason, count in counts["skipped"].items() if count}
        steps.append(FunnelStep("tokenize", counts["documents_in"], skipped))
    return steps


# ---------------------------------------------------------------- SVG charts


def _fmt(value: float) -> str:
    """Axis and table numbers: 12,345 / 1.2M / 0.153."""
    if value != value:
        return "–"
    magnitude = abs(value)
    if magnitude >= 1e6:
        for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
            if magnitude >= scale:
                return f"{value / scale:.3g}{suffix}"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3g}" if magnitude >= 0.001 else f"{value:.2e}"


def _nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 × 10^k, whole numbers for counts) covering [low, high]."""
    raw = max((high - low) / count or 1.0, 1.0 if integer else 0.0)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _text(x: float, y: float, content: str, anchor: str = "middle", size: int = 11, color: str = INK) -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{color}">'
        f"{html.escape(content)}</text>"
    )


def _rect(x: float, y: float, width: float, height: float, color: str, tip: str) -> str:
    return (
        f'<rect x="{x:.2f}" y="{y:.2f}" width="{max(width, 0.5):.2f}" height="{max(height, 0):.2f}" '
        f'fill="{color}"><title>{html.escape(tip)}</title></rect>'
    )


def _svg(width: int, height: int, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{html.escape(label)}" font-family="sans-serif">'
        + "".join(body)
        + "</svg>"
    )


@dataclass
class Frame:
    """The geometry of one x/y chart: data coordinates mapped into the plot area inside the margins."""

    width: int
    height: int
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_x: bool = False
    y_counts: bool = True
    x_counts: bool = False
    left: int = 58
    right: int = 16
    top: int = 14
    bottom: int = 40

    def x(self, value: float) -> float:
        low, high = self.x_range
        if self.log_x:
            value, low, high = math.log10(max(value, 1e-300)), math.log10(low), math.log10(high)
        return self.left + (value - low) / ((high - low) or 1) * (self.width - self.left - self.right)

    def y(self, value: float) -> float:
        low, high = self.y_range
        return (
            self.height
            - self.bottom
            - (value - low) / ((high - low) or 1) * (self.height - self.top - self.bottom)
        )

    def axes(self, x_label: str, y_label: str) -> list[str]:
        """Grid lines with labelled ticks, and the axis titles."""
        body = []
        for tick in _nice_ticks(*self.y_range, count=4, integer=self.y_counts):
            y = self.y(tick)
            body.append(
                f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{GRID}"/>'
            )
            body.append(_text(self.left - 5, y + 4, _fmt(tick), anchor="end", size=10))
        low, high = self.x_range
        if self.log_x:
            ticks = [10.0**k for k in range(math.ceil(math.log10(low)), math.floor(math.log10(high)) + 1)]
        else:
            ticks = _nice_ticks(low, high, count=5, integer=self.x_counts)
        base = self.height - self.bottom
        for tick in ticks:
            x = self.x(tick)
            body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{base}" y2="{base + 4}" stroke="{INK}"/>')
            body.append(_text(x, base + 15, _fmt(tick), size=10))
        body.append(
            f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{base}" y2="{base}" stroke="{INK}"/>'
        )
        body.append(_text((self.left + self.width - self.right) / 2, self.height - 6, x_label))
        body.append(
            f'<text transform="translate(13 {(self.top + base) / 2:.0f}) rotate(-90)" text-anchor="middle" '
            f'font-size="11" fill="{INK}">{html.escape(y_label)}</text>'
        )
        return body


def _legend(items: list[tuple[str, str]], x: float, y: float) -> list[str]:
    body = []
    for name, color in items:
        body.append(f'<rect x="{x:.0f}" y="{y - 9:.0f}" width="10" height="10" fill="{color}"/>')
        body.append(_text(x + 14, y, name, anchor="start", size=10))
        x += 22 + 6.5 * len(name)
    return body


def bar_chart(
    label: str, rows: list[tuple[str, list[int]]], series: list[tuple[str, str]], width: int = 900
) -> str:
    """Horizontal bars, one row per label, stacked across series (name, color)."""
    row_height, left, top = 22, 190, 22
    height = top + row_height * len(rows) + 10
    longest = max((sum(values) for _, values in rows), default=0) or 1
    scale = (width - left - 110) / longest
    body = _legend(series, left, 12) if len(series) > 1 else []
    for index, (name, values) in enumerate(rows):
        y = top + index * row_height
        body.append(_text(left - 8, y + 15, name, anchor="end"))
        x = float(left)
        for (series_name, color), value in zip(series, values, strict=True):
            if value:
                body.append(
                    _rect(x, y + 3, value * scale, row_height - 6, color, f"{name}: {value:,} {series_name}")
                )
                x += value * scale
        body.append(_text(x + 6, y + 15, f"{sum(values):,}", anchor="start"))
    return _svg(width, height, label, body)


def histogram_chart(histogram: Histogram, lines: list[tuple[str, float]], width: int = 400) -> str:
    """Kept and removed documents stacked per bin; each recipe threshold a dashed vertical line."""
    edges, stacked = histogram.edges, histogram.kept + histogram.removed
    frame = Frame(width, 210, (edges[0], edges[-1]), (0, max(int(stacked.max()), 1)), log_x=histogram.log)
    body = frame.axes(histogram.column, "documents")
    for low, high, kept, removed in zip(
        edges[:-1], edges[1:], histogram.kept, histogram.removed, strict=True
    ):
        x, bar = frame.x(low), frame.x(high) - frame.x(low) - 0.6
        span = f"{_fmt(low)}–{_fmt(high)}"
        if kept:
            body.append(
                _rect(x, frame.y(kept), bar, frame.y(0) - frame.y(kept), KEPT, f"{span}: {kept:,} kept")
            )
        if removed:
            top = frame.y(kept + removed)
            body.append(_rect(x, top, bar, frame.y(kept) - top, REMOVED, f"{span}: {removed:,} removed"))
    for name, value in lines:
        x = frame.x(value)
        body.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.top}" y2="{frame.y(0):.1f}" stroke="{THRESHOLD}" '
            f'stroke-width="1.5" stroke-dasharray="4 3"><title>{html.escape(name)} = {value:g}</title></line>'
        )
        body.append(_text(x + 3, frame.top + 8, f"{value:g}", anchor="start", size=10, color=THRESHOLD))
    return _svg(width, frame.height, f"histogram of {histogram.column}", body)


def column_chart(label: str, columns: list[tuple[str, int, str]], y_label: str, width: int = 900) -> str:
    """Vertical bars (name, value, color) side by side, bar i centred on tick i: tokens per shard."""
    highest = max((value for _, value, _ in columns), default=1) or 1
    frame = Frame(width, 240, (-0.5, len(columns) - 0.5), (0, highest), x_counts=True)
    body = frame.axes("shard", y_label)
    for index, (name, value, color) in enumerate(columns):
        x = frame.x(index - 0.5)
        step = frame.x(index + 0.5) - x
        body.append(
            _rect(
                x + step * 0.1,
                frame.y(value),
                step * 0.8,
                frame.y(0) - frame.y(value),
                color,
                f"{name}: {value:,}",
            )
        )
    return _svg(width, frame.height, label, body)


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_LINE_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_LINE_POINTS)
    return points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])


def line_chart(label: str, series: list[tuple[str, str, list[tuple[float, float]]]], width: int = 900) -> str:
    """Lines (name, color, [(x, y)]) on shared axes: the trainer's loss and validation loss by step."""
    xs = [x for _, _, points in series for x, _ in points]
    ys = [y for _, _, points in series for _, y in points]
    pad = (max(ys) - min(ys)) * 0.05 or 0.5
    x_range = (min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1)
    frame = Frame(width, 300, x_range, (min(ys) - pad, max(ys) + pad), y_counts=False)
    body = frame.axes("step", "loss")
    for name, color, points in series:
        path = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in _thin(points))
        body.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.6">'
            f"<title>{html.escape(name)}</title></polyline>"
        )
        if len(points) <= 60:
            body += [
                f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="2.5" fill="{color}"/>'
                for x, y in points
            ]
    body += _legend([(name, color) for name, color, _ in series], frame.left + 10, frame.top + 12)
    return _svg(width, frame.height, label, body)


# ---------------------------------------------------------------- the page


def _table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    def cell(value: Any, tag: str) -> str:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        text = _fmt(value) if numeric else html.escape(str(value))
        return f'<{tag} class="num">{text}</{tag}>' if numeric else f"<{tag}>{text}</{tag}>"

    head = "".join(cell(name, "th") for name in header)
    body = "".join("<tr>" + "".join(cell(value, "td") for value in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(caption: str, chart: str) -> str:
    return f'<figure class="chart"><figcaption>{html.escape(caption)}</figcaption>{chart}</figure>'


def _absent(what: str, how: str) -> str:
    return f'<p class="absent">Absent: <code>{html.escape(what)}</code> — {html.escape(how)}.</p>'


def _section(title: str, anchor: str, parts: list[str]) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'


def _funnel_section(steps: list[FunnelStep]) -> list[str]:
    rows = [("records read", [steps[0].records_in])] + [(step.stage, [step.records_out]) for step in steps]
    chart = bar_chart("record funnel", rows, [("records", KEPT)])
    table = _table(
        ["stage", "in", "dropped", "out", "reasons"],
        (
            [
                step.stage,
                step.records_in,
                step.dropped,
                step.records_out,
                ", ".join(f"{reason} {count:,}" for reason, count in step.reasons.items()) or "–",
            ]
            for step in steps
        ),
    )
    return [_figure("Records remaining after each stage", chart), table]


def _language_section(corpus: Corpus) -> list[str]:
    totals = corpus.languages_kept + corpus.languages_removed
    top = [language for language, _ in totals.most_common(15)]
    rows = [(lang, [corpus.languages_kept[lang], corpus.languages_removed[lang]]) for lang in top]
    rest = sum(totals.values()) - sum(totals[lang] for lang in top)
    if rest:
        rest_kept = sum(corpus.languages_kept.values()) - sum(corpus.languages_kept[lang] for lang in top)
        rows.append((f"{len(totals) - len(top)} others", [rest_kept, rest - rest_kept]))
    parts = [
        _figure(
            "Documents per language (lid.176 top label)",
            bar_chart("language distribution", rows, [("kept", KEPT), ("removed", REMOVED)]),
        )
    ]
    if not corpus.removed:
        parts.append(
            _absent("removed/", "kept documents only; ingest with --keep-removed to see dropped pages")
        )
    return parts


def _signal_sections(
    corpus: Corpus, lines: dict[str, list[tuple[str, float]]]
) -> tuple[list[str], list[str]]:
    """The document-length chart, and a grid with every other signal: ruled signals first."""
    length = corpus.histograms.get(LENGTH_COLUMN)
    length_parts = (
        [
            _figure(
                "Words per document (non-symbol words, log scale), Gopher length rules dashed",
                histogram_chart(length, lines.get(LENGTH_COLUMN, []), width=900),
            )
        ]
        if length
        else [_absent(LENGTH_COLUMN, "no document reached the Gopher quality filter")]
    )
    order = ["language_score", *signal_columns()]
    others = sorted(
        (c for c in corpus.histograms if c != LENGTH_COLUMN), key=lambda c: (c not in lines, order.index(c))
    )
    grid = []
    for column in others:
        marks = lines.get(column, [])
        caption = "; ".join(f"{name} = {value:g}" for name, value in marks) or "no threshold in the recipe"
        grid.append(_figure(f"{column} — {caption}", histogram_chart(corpus.histograms[column], marks)))
    legend = _svg(
        300, 20, "legend", _legend([("kept", KEPT), ("removed", REMOVED), ("threshold", THRESHOLD)], 2, 14)
    )
    return length_parts, [legend, f'<div class="grid">{"".join(grid)}</div>']


def _size_bucket(size: int) -> int:
    """Cluster sizes grouped by powers of two: 1, 2, 3–4, 5–8, …"""
    return max(size - 1, 0).bit_length()


def _dedup_section(dedup: dict[str, Any]) -> list[str]:
    buckets: Counter[int] = Counter()
    for size, count in dedup.get("clusters_by_size", {}).items():
        buckets[_size_bucket(int(size))] += count
    rows = []
    for bucket in sorted(buckets):
        low, high = (1, 1) if bucket == 0 else (2 ** (bucket - 1) + 1, 2**bucket)
        rows.append((str(low) if low == high else f"{low}–{high}", [buckets[bucket]]))
    chart = bar_chart("dedup cluster sizes", rows, [("clusters", KEPT)])
    kinds = (
        "docs_in",
        "survivors",
        "exact_duplicates",
        "fuzzy_duplicates",
        "url_duplicates",
        "prior_duplicates",
    )
    pii = dedup.get("pii_replacements", {})
    table = _table(
        ["", "documents"],
        [
            *((kind, dedup[kind]) for kind in kinds if kind in dedup),
            *((f"PII replaced: {kind}", count) for kind, count in pii.items()),
        ],
    )
    return [_figure("Clusters by size (documents per cluster)", chart), table]


def _tokens_section(name: str, manifest: dict[str, Any]) -> list[str]:
    shards = manifest["shards"]
    columns = [(shard["bin"], shard["tokens"], VAL if shard["split"] == "val" else TRAIN) for shard in shards]
    counts = manifest["counts"]
    table = _table(["", "count"], [(key, value) for key, value in counts.items() if isinstance(value, int)])
    chart = column_chart(f"tokens per shard ({name})", columns, "tokens")
    legend = _svg(300, 20, "legend", _legend([("val", VAL), ("train", TRAIN)], 2, 14))
    caption = f"Tokens per shard — {name}, {manifest.get('dtype', '?')}, {len(shards)} shards"
    return [_figure(caption, legend + chart), table]


def _training_section(root: str, metrics: dict[str, list[dict[str, Any]]]) -> list[str]:
    parts = []
    for uri, records in metrics.items():
        loss = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
        val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
        series = [("train loss", KEPT, loss)] + ([("val loss", REMOVED, val)] if val else [])
        name = uri[len(root) :].lstrip("/")
        if not loss:
            parts.append(_absent(name, "no step with a loss"))
            continue
        speeds = [r["tokens_per_s"] for r in records if r.get("tokens_per_s")]
        mfus = [r["mfu"] for r in records if r.get("mfu")]
        summary = [("last step", loss[-1][0]), ("last loss", loss[-1][1])]
        summary += [("best val loss", min(v for _, v in val))] if val else []
        summary += [("median tokens/s", float(np.median(speeds)))] if speeds else []
        summary += [("median MFU", float(np.median(mfus)))] if mfus else []
        parts += [
            _figure(f"Loss by step — {name}", line_chart(f"loss curve {name}", series)),
            _table(["", "value"], summary),
        ]
    return parts


def _units_section(units: list[dict[str, Any]]) -> list[str]:
    rows = [
        [u["unit"], u["records"], u["html_responses"], u["kept"], sum(u["errors"].values()), u["seconds"]]
        for u in units[:MAX_UNIT_ROWS]
    ]
    parts = [_table(["unit", "records", "HTML", "kept", "errors", "seconds"], rows)]
    if len(units) > MAX_UNIT_ROWS:
        parts.append(f"<p>… and {len(units) - MAX_UNIT_ROWS:,} more units (ROOT/stats/units/).</p>")
    return parts


STYLE = """
body { font-family: sans-serif; color: #2d3748; margin: 24px auto; max-width: 1260px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; border-bottom: 1px solid #cbd5e0; }
.meta { color: #4a5568; font-size: 13px; } .absent { color: #9c4221; font-style: italic; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 16px; }
th, td { border: 1px solid #e2e8f0; padding: 3px 8px; text-align: left; }
td.num, th.num { text-align: right; }
figure.chart { margin: 8px 0; } figcaption { font-size: 13px; font-weight: bold; margin-bottom: 2px; }
.grid { display: grid; grid-template-columns: repeat(3, 400px); gap: 4px 16px; }
.grid figcaption { font-weight: normal; font-size: 11px; height: 28px; overflow: hidden; }
"""


def _iter_sections(root: str, s3: S3Options) -> Iterator[str]:
    ingest = _read_json(join(root, "stats", "ingest.json"), s3)
    dedup = _read_json(join(root, "stats", "dedup.json"), s3)
    manifests = {
        uri.rsplit("/", 2)[-2]: json.loads(read_bytes(uri, s3))
        for uri in list_files(join(root, "tokens"), s3)
        if uri.endswith("/manifest.json")
    }
    run = latest_ingest_recipe(root, s3)
    recipe = run["recipe"] if run else None
    if recipe is None:
        recipe = {"name": "fineweb (preset: no run record)", **load_recipe("fineweb", []).tables}
    lines = thresholds(recipe)
    corpus = read_corpus(root, s3, lines)
    first_manifest = next(iter(manifests.values()), None)

    if ingest is None:
        yield _section(
            "Record funnel", "funnel", [_absent("stats/ingest.json", "run tokenmill ingest -o ROOT")]
        )
    else:
        yield _section("Record funnel", "funnel", _funnel_section(funnel(ingest, dedup, first_manifest)))
    if corpus.documents or corpus.removed:
        length_parts, grid = _signal_sections(corpus, lines)
        yield _section("Languages", "languages", _language_section(corpus))
        yield _section("Document length", "length", length_parts)
        yield _section(f"Quality signals (recipe {recipe.get('name', '?')})", "signals", grid)
    else:
        yield _section(
            "Documents", "documents", [_absent("documents/*.parquet", "no documents were written")]
        )
    dedup_parts = (
        _dedup_section(dedup) if dedup else [_absent("stats/dedup.json", "run tokenmill dedup -o ROOT")]
    )
    yield _section("Deduplication", "dedup", dedup_parts)
    tokens_parts = [part for name, m in sorted(manifests.items()) for part in _tokens_section(name, m)]
    yield _section(
        "Tokens", "tokens", tokens_parts or [_absent("tokens/*/manifest.json", "run tokenmill tokenize")]
    )
    metrics = read_metrics(root, s3)
    yield _section(
        "Training",
        "training",
        _training_section(root, metrics) or [_absent("metrics.jsonl", "no trainer run under ROOT")],
    )
    units = [
        json.loads(read_bytes(uri, s3))
        for uri in list_files(join(root, "stats", "units"), s3)
        if uri.endswith(".json")
    ]
    yield _section(
        "Units", "units", _units_section(units) if units else [_absent("stats/units/", "no unit finished")]
    )


def render(root: str, s3: S3Options) -> str:
    """The whole page as one string."""
    title = f"tokenmill run report — {root}"
    created = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<link rel="icon" href="data:,">'  # no favicon request, so no console error for a missing one
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f'<h1>tokenmill run report</h1><p class="meta">{html.escape(root)} · generated {created}</p>'
        + "".join(_iter_sections(root, s3))
        + "</body></html>"
    )


def write_report(root: str, s3: S3Options) -> str:
    """Render ROOT's report and commit it atomically to ROOT/report.html; returns that URI."""
    uri = join(root, REPORT_NAME)
    write_atomic(uri, render(root, s3).encode("utf-8"), s3)
    return uri
