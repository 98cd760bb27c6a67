"""Ingest: Common Crawl WARC/WET files -> FineWeb-filtered documents, one Spark task per input file.

    tokenmill ingest INPUT... -o ROOT [--dump NAME] [--recipe fineweb|FILE] [--set S.K=V] [--limit N]
    spark-submit jobs/ingest.py INPUT... -o ROOT ...

Each task runs `pipeline.ingest.unit.process_unit`, which commits the unit's Parquet, stats and
completion marker itself; the driver only plans and summarizes. A unit whose marker is current is
skipped, so a rerun after a crash resumes and a rerun of a finished ingest does nothing.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from tokenmill.jobs.spark.progress import StageProgress
from tokenmill.jobs.stages.records import Timings, write_run_record, write_stats
from tokenmill.jobs.stages.settings import SparkSettings, option
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.ingest.sources import expand_inputs, input_versions, unit_name
from tokenmill.pipeline.ingest.stats import UnitStats
from tokenmill.pipeline.ingest.unit import IngestJob, completed_stats, process_unit
from tokenmill.pipeline.recipe import Recipe, load_recipe
from tokenmill.pipeline.storage import join
from tokenmill.pipeline.storage.roots import check_writable_root
from tokenmill.pipeline.storage.uri import redact, redact_text

SUMMARY = "WARC/WET files -> FineWeb-filtered documents (Parquet)"


@dataclass(frozen=True, kw_only=True)
class IngestSettings(SparkSettings):
    inputs: tuple[str, ...] = option(
        help="WARC/WET files, directories, globs, s3:// prefixes, https:// URLs or *.paths[.gz] manifests",
        metavar="INPUT",
        positional=True,
    )
    output: str = option(
        help="output root: a local path or s3://bucket/prefix", flags=("-o", "--output"), metavar="ROOT"
    )
    dump: str = option("", "dump name stored in every document (default: the CC-MAIN-* in each path)")
    recipe: str = option("fineweb", "preset name or TOML file (default: fineweb)")
    overrides: tuple[str, ...] = option(
        (),
        "override one recipe value, e.g. --set gopher_quality.min_doc_words=40 (repeatable)",
        flags=("--set",),
        metavar="SECTION.KEY=VALUE",
        repeated=True,
    )
    limit: int | None = option(None, "read at most N records per input file", metavar="N")
    cc_base: str = option(
        "s3://commoncrawl/",
        "where manifest lines are resolved (default s3://commoncrawl/; or https://data.commoncrawl.org/)",
    )
    keep_removed: bool = option(False, "also write dropped documents with their reason to ROOT/removed/")

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit {self.limit}: give a number of records of at least 1, or leave it out")

    def load_recipe(self) -> Recipe:
        return load_recipe(self.recipe, list(self.overrides))


def check_ingest(settings: IngestSettings) -> list[str]:
    """Everything a user can get wrong, before Spark starts: the recipe, the inputs, the output root.
    Returns the input files."""
    settings.load_recipe()
    inputs = expand_inputs(list(settings.inputs), settings.s3, cc_base=settings.cc_base)
    check_writable_root(settings.output, settings.s3)
    return inputs


def _process(uri: str, version: str | None, job: IngestJob) -> dict[str, Any]:
    """Executor side: a unit that cannot be processed at all (unreadable, missing) is reported, not fatal."""
    logging.basicConfig(level=logging.WARNING)
    try:
        return {"stats": process_unit(uri, job, version).to_dict()}
    except Exception as exc:
        logging.getLogger("tokenmill.ingest").exception("unit %s failed", redact(uri))
        error = redact_text(f"{type(exc).__name__}: {exc}")
        return {"failed": {"unit": unit_name(uri), "path": redact(uri), "error": error}}


def run_ingest(spark: SparkSession, settings: IngestSettings) -> dict[str, Any]:
    """Process every input file not yet complete; the summary counts every record of every unit."""
    timings = Timings()
    recipe = settings.load_recipe()
    s3 = settings.s3
    job = IngestJob(
        root=settings.output,
        recipe=recipe,
        dump=settings.dump,
        keep_removed=settings.keep_removed,
        limit=settings.limit,
        s3=s3,
    )
    inputs = expand_inputs(list(settings.inputs), s3, cc_base=settings.cc_base)
    versions = input_versions(inputs, s3)
    done = {uri: stats for uri in inputs if (stats := completed_stats(uri, job, versions[uri])) is not None}
    pending = [(uri, versions[uri]) for uri in inputs if uri not in done]
    print(f"ingest: {len(inputs)} input files, {len(done)} already complete, {len(pending)} to process")

    results: list[dict[str, Any]] = []
    if pending:
        with StageProgress(spark, "ingest", units=len(pending)) as progress:
            records = progress.documents

            def process(unit: tuple[str, str | None]) -> dict[str, Any]:
                result = _process(*unit, job)
                records.add(result.get("stats", {}).get("records", 0))
                return result

            results = spark.sparkContext.parallelize(pending, numSlices=len(pending)).map(process).collect()
    units = list(done.values()) + [UnitStats.from_dict(r["stats"]) for r in results if "stats" in r]
    summary = summarize(units)
    summary.update(failed_units=[r["failed"] for r in results if "failed" in r], skipped_units=len(done))
    summary["seconds"] = timings.total()
    write_stats(settings.output, "ingest", summary, s3)
    write_run_record(settings.output, "ingest", settings, summary, s3, recipe=recipe, inputs=inputs)
    print(format_table(summary))
    print(
        f"output: {join(settings.output, 'documents')}  ({summary['kept']:,} documents in {len(units)} units)"
    )
    for failure in summary["failed_units"]:
        print(f"FAILED unit {failure['unit']} ({failure['path']}): {failure['error']}", file=sys.stderr)
    if summary["unbalanced_units"]:
        print(f"ACCOUNTING ERROR in units {summary['unbalanced_units']}", file=sys.stderr)
    return summary


def summarize(units: list[UnitStats]) -> dict[str, Any]:
    dropped: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for unit in units:
        dropped.update(unit.dropped)
        errors.update(unit.errors)
    return {
        "units": len(units),
        "records": sum(unit.records for unit in units),
        "html_responses": sum(unit.html_responses for unit in units),
        "kept": sum(unit.kept for unit in units),
        "dropped": dict(sorted(dropped.items())),
        "errors": dict(sorted(errors.items())),
        "bytes_read": sum(unit.bytes_read for unit in units),
        "task_seconds": round(sum(unit.seconds for unit in units), 3),
        "unbalanced_units": [unit.unit for unit in units if not unit.balanced],
    }


def format_table(summary: dict[str, Any]) -> str:
    lines = [
        f"{'records read':<44}{summary['records']:>12,}",
        f"{'HTML responses':<44}{summary['html_responses']:>12,}",
        f"{'kept':<44}{summary['kept']:>12,}",
        "dropped:",
    ]
    lines += [f"  {reason:<42}{count:>12,}" for reason, count in summary["dropped"].items()]
    lines.append(f"{'errors':<44}{sum(summary['errors'].values()):>12,}")
    lines += [f"  {kind:<42}{count:>12,}" for kind, count in summary["errors"].items()]
    return "\n".join(lines)
