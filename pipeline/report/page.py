"""The report page: one section per part of a run, as self-contained HTML, written to ROOT/report.html.

A part whose input is absent is named as absent, so a half-finished run still gets a report.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from tokenmill.pipeline.report.read import (
    LENGTH_COLUMN,
    SFT,
    Corpus,
    FunnelStep,
    Lines,
    Run,
    TrainingRun,
    funnel,
    histogram_columns,
    read_run,
    selection_histogram,
    selection_lines,
)
from tokenmill.pipeline.report.svg import (
    KEPT,
    REMOVED,
    THRESHOLD,
    TRAIN,
    VAL,
    bar_chart,
    column_chart,
    format_number,
    histogram_chart,
    legend_chart,
    line_chart,
)
from tokenmill.pipeline.select import describe_rule
from tokenmill.pipeline.storage import S3Options, join, write_atomic

REPORT_NAME = "report.html"
MAX_UNIT_ROWS = 100

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
.pair { display: grid; grid-template-columns: repeat(2, 600px); gap: 0 16px; align-items: start; }
"""


def _table(header: list[str], rows: Iterable[Iterable[Any]]) -> str:
    def cell(value: Any, tag: str) -> str:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        text = format_number(value) if numeric else html.escape(str(value))
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


def _signal_sections(corpus: Corpus, lines: Lines) -> tuple[list[str], list[str]]:
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
    order = histogram_columns()
    others = sorted(
        (c for c in corpus.histograms if c != LENGTH_COLUMN), key=lambda c: (c not in lines, order.index(c))
    )
    grid = []
    for column in others:
        marks = lines.get(column, [])
        caption = "; ".join(f"{name} = {value:g}" for name, value in marks) or "no threshold in the recipe"
        grid.append(_figure(f"{column} — {caption}", histogram_chart(corpus.histograms[column], marks)))
    legend = legend_chart([("kept", KEPT), ("removed", REMOVED), ("threshold", THRESHOLD)])
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


def _select_section(select: dict[str, Any]) -> list[str]:
    """The --by score's histogram, kept vs removed, the threshold dashed; the rule's figures; buckets."""
    parts = []
    histogram = selection_histogram(select)
    lines = selection_lines(select)
    if histogram is None:
        parts.append(_absent(select["by"], "no document had a score"))
    else:
        legend = legend_chart([("kept", KEPT), ("removed", REMOVED), ("threshold", THRESHOLD)])
        caption = "; ".join(f"{name} = {value:g}" for name, value in lines) or "nothing kept"
        unscored = select["removed"].get("no_score", 0)
        caption += f" ({unscored:,} documents without a score not drawn)" if unscored else ""
        parts += [legend, _figure(f"{select['by']} — {caption}", histogram_chart(histogram, lines, 900))]
    rows = [
        ("rule", describe_rule(select)),
        ("threshold", "–" if select["threshold"] is None else select["threshold"]),
        ("requested fraction", "–" if select["requested_fraction"] is None else select["requested_fraction"]),
        (
            "achieved fraction of scored",
            "–" if select["achieved_fraction"] is None else select["achieved_fraction"],
        ),
        ("quantile error (documents)", select["quantile_error_documents"]),
        ("documents in", select["docs_in"]),
        ("kept", select["kept"]),
        *((f"removed: {reason}", count) for reason, count in select["removed"].items()),
        (
            "at the threshold's score: documents, kept",
            f"{select['threshold_ties']['documents']:,}, "
            f"{select['threshold_ties']['kept']:,} (ties: smaller id first)",
        ),
    ]
    parts.append(_table(["", "value"], rows))
    if select["buckets"]:
        edges = select["bucket_edges"]
        parts.append(
            _table(
                ["quality_bucket", "documents", "highest score"],
                (
                    [bucket, size, "–" if bucket == len(edges) or edges[bucket] is None else edges[bucket]]
                    for bucket, size in enumerate(select["bucket_sizes"])
                ),
            )
        )
    return parts


def _tokens_section(name: str, manifest: dict[str, Any]) -> list[str]:
    shards = manifest["shards"]
    columns = [(shard["bin"], shard["tokens"], VAL if shard["split"] == "val" else TRAIN) for shard in shards]
    counts = manifest["counts"]
    table = _table(["", "count"], [(key, value) for key, value in counts.items() if isinstance(value, int)])
    chart = column_chart(f"tokens per shard ({name})", columns, "tokens")
    legend = legend_chart([("val", VAL), ("train", TRAIN)])
    caption = f"Tokens per shard — {name}, {manifest.get('dtype', '?')}, {len(shards)} shards"
    return [_figure(caption, legend + chart), table]


def _sft_data_rows(sft_data: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """sft_data.json as table rows: its counts, then each skip reason."""
    for key, value in sft_data.items():
        if isinstance(value, dict):
            yield from ((f"{key}: {reason}", count) for reason, count in value.items())
        else:
            yield key, value


def _loss_parts(root: str, run: TrainingRun, label: str, width: int) -> list[str]:
    """One run's loss curve and summary. A fine-tune's held-out loss starts at step 0 with the base
    model's, which the chart marks, so the gain over the base model reads at a glance."""
    records = run.records
    loss = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    val_name = "held-out loss" if run.kind == SFT else "val loss"
    series = [("train loss", KEPT, loss)] + ([(val_name, REMOVED, val)] if val else [])
    base = val[0][1] if run.kind == SFT and val and val[0][0] == 0 else None
    name = run.uri[len(root) :].lstrip("/")
    if not loss:
        return [_absent(name, "no step with a loss")]
    speeds = [r["tokens_per_s"] for r in records if r.get("tokens_per_s")]
    mfus = [r["mfu"] for r in records if r.get("mfu")]
    summary = [("last step", loss[-1][0]), ("last loss", loss[-1][1])]
    summary += [("base model held-out loss", base)] if base is not None else []
    summary += [(f"best {val_name}", min(v for _, v in val))] if val else []
    summary += [("median tokens/s", float(np.median(speeds)))] if speeds else []
    summary += [("median MFU", float(np.median(mfus)))] if mfus else []
    marks = [("base model held-out loss", base)] if base is not None else []
    chart = line_chart(f"loss curve {name}", series, width=width, marks=marks)
    parts = [_figure(f"{label}Loss by step — {name}", chart), _table(["", "value"], summary)]
    if run.sft_data:
        parts.append(_table(["conversations", "count"], _sft_data_rows(run.sft_data)))
    return parts


def _training_section(root: str, training: list[TrainingRun]) -> list[str]:
    """Each run's loss curve; with a fine-tune, pretraining and fine-tuning side by side."""
    pretraining = [run for run in training if run.kind != SFT]
    fine_tuning = [run for run in training if run.kind == SFT]
    if not fine_tuning:
        return [part for run in pretraining for part in _loss_parts(root, run, "", width=900)]
    columns = []
    for label, runs, where in (
        ("pretraining", pretraining, "train/"),
        ("supervised fine-tuning", fine_tuning, "sft/"),
    ):
        parts = [part for run in runs for part in _loss_parts(root, run, f"{label}: ", width=600)]
        columns.append("".join(parts or [_absent(f"{where}**/metrics.jsonl", f"no {label} run under ROOT")]))
    return [f'<div class="pair">{"".join(f"<div>{column}</div>" for column in columns)}</div>']


def _units_section(units: list[dict[str, Any]]) -> list[str]:
    rows = [
        [u["unit"], u["records"], u["html_responses"], u["kept"], sum(u["errors"].values()), u["seconds"]]
        for u in units[:MAX_UNIT_ROWS]
    ]
    parts = [_table(["unit", "records", "HTML", "kept", "errors", "seconds"], rows)]
    if len(units) > MAX_UNIT_ROWS:
        parts.append(f"<p>… and {len(units) - MAX_UNIT_ROWS:,} more units (ROOT/stats/units/).</p>")
    return parts


def _iter_sections(run: Run) -> Iterator[str]:
    first_manifest = next(iter(run.manifests.values()), None)
    if run.ingest is None:
        yield _section(
            "Record funnel", "funnel", [_absent("stats/ingest.json", "run tokenmill ingest -o ROOT")]
        )
    else:
        steps = funnel(run.ingest, run.dedup, first_manifest, run.select)
        yield _section("Record funnel", "funnel", _funnel_section(steps))
    corpus = run.corpus
    if corpus.documents or corpus.removed:
        length_parts, grid = _signal_sections(corpus, run.lines)
        yield _section("Languages", "languages", _language_section(corpus))
        yield _section("Document length", "length", length_parts)
        yield _section(f"Quality signals (recipe {run.recipe.get('name', '?')})", "signals", grid)
    else:
        yield _section(
            "Documents", "documents", [_absent("documents/*.parquet", "no documents were written")]
        )
    dedup_parts = (
        _dedup_section(run.dedup)
        if run.dedup
        else [_absent("stats/dedup.json", "run tokenmill dedup -o ROOT")]
    )
    yield _section("Deduplication", "dedup", dedup_parts)
    if run.select:  # a stage of its own only with --by: no section, no absence, without it
        yield _section(f"Selection by {run.select['by']}", "select", _select_section(run.select))
    tokens_parts = [part for name, m in sorted(run.manifests.items()) for part in _tokens_section(name, m)]
    yield _section(
        "Tokens", "tokens", tokens_parts or [_absent("tokens/*/manifest.json", "run tokenmill tokenize")]
    )
    yield _section(
        "Training",
        "training",
        _training_section(run.root, run.training) or [_absent("metrics.jsonl", "no trainer run under ROOT")],
    )
    yield _section(
        "Units",
        "units",
        _units_section(run.units) if run.units else [_absent("stats/units/", "no unit finished")],
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
        + "".join(_iter_sections(read_run(root, s3)))
        + "</body></html>"
    )


def write_report(root: str, s3: S3Options) -> str:
    """Render ROOT's report and commit it atomically to ROOT/report.html; returns that URI."""
    uri = join(root, REPORT_NAME)
    write_atomic(uri, render(root, s3).encode("utf-8"), s3)
    return uri
