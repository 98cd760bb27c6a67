"""Ingest: Common Crawl WARC/WET files -> FineWeb-filtered documents (DESIGN.md §2-4).

    spark-submit jobs/ingest.py INPUT... -o ROOT [--dump NAME] [--recipe fineweb|FILE] [--limit N]
    tokenmill ingest INPUT... -o ROOT [--master URL] [--s3-endpoint URL] [--keep-removed]

One Spark task per input file. Each task runs `pipeline.ingest.process_unit`, which commits the
unit's Parquet, stats and completion marker itself; the driver only plans and summarizes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from tokenmill.jobs.runinfo import versions
from tokenmill.jobs.spark.progress import StageProgress
from tokenmill.jobs.spark.session import add_cluster_arguments
from tokenmill.pipeline.ingest.sources import expand_inputs, unit_name
from tokenmill.pipeline.ingest.stats import UnitStats
from tokenmill.pipeline.ingest.unit import IngestJob, completed_stats, process_unit
from tokenmill.pipeline.recipe import load_recipe
from tokenmill.pipeline.storage import S3Options, join, write_atomic

log = logging.getLogger("tokenmill.ingest")

EXIT_UNITS_FAILED = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="WARC/WET files, directories, globs, s3:// prefixes, https:// URLs or *.paths[.gz] manifests",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="ROOT",
        help="output root: a local path or s3://bucket/prefix",
    )
    parser.add_argument(
        "--dump", default="", help="dump name stored in every document (e.g. CC-MAIN-2024-22)"
    )
    parser.add_argument("--recipe", default="fineweb", help="preset name or TOML file (default: fineweb)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one recipe value, e.g. --set gopher_quality.min_doc_words=40",
    )
    parser.add_argument(
        "--limit", type=int, default=None, metavar="N", help="read at most N records per input file"
    )
    add_cluster_arguments(parser)
    parser.add_argument(
        "--cc-base",
        default="s3://commoncrawl/",
        help="where manifest lines are resolved (default s3://commoncrawl/; or https://data.commoncrawl.org/)",
    )
    parser.add_argument(
        "--keep-removed",
        action="store_true",
        help="also write dropped documents with their reason to ROOT/removed/",
    )


def _run_unit(uri: str, job: IngestJob) -> dict[str, Any]:
    """Executor side: a unit that cannot be processed at all (unreadable, missing) is reported, not fatal."""
    logging.basicConfig(level=logging.WARNING)
    try:
        return {"stats": process_unit(uri, job).to_dict()}
    except Exception as exc:
        logging.getLogger("tokenmill.ingest").exception("unit %s failed", uri)
        return {"failed": {"unit": unit_name(uri), "path": uri, "error": f"{type(exc).__name__}: {exc}"}}


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


def format_table(summary: dict[str, Any], seconds: float) -> str:
    lines = [
        f"{'records read':<44}{summary['records']:>12,}",
        f"{'HTML responses':<44}{summary['html_responses']:>12,}",
        f"{'kept':<44}{summary['kept']:>12,}",
        "dropped:",
    ]
    lines += [f"  {reason:<42}{count:>12,}" for reason, count in summary["dropped"].items()]
    lines.append(f"{'errors':<44}{sum(summary['errors'].values()):>12,}")
    lines += [f"  {kind:<42}{count:>12,}" for kind, count in summary["errors"].items()]
    rate = summary["records"] / seconds if seconds > 0 else 0.0
    lines.append(f"{'docs/s (records read / wall seconds)':<44}{rate:>12,.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    recipe = load_recipe(args.recipe, args.set)
    s3 = S3Options(endpoint_url=args.s3_endpoint)
    job = IngestJob(
        root=args.output,
        recipe=recipe,
        dump=args.dump,
        keep_removed=args.keep_removed,
        limit=args.limit,
        s3=s3,
    )
    inputs = expand_inputs(args.inputs, s3, cc_base=args.cc_base)
    done = {uri: stats for uri in inputs if (stats := completed_stats(uri, job)) is not None}
    pending = [uri for uri in inputs if uri not in done]
    print(
        f"ingest: {len(inputs)} input files, {len(done)} already complete, {len(pending)} to process",
        flush=True,
    )

    results: list[dict[str, Any]] = []
    if pending:
        from tokenmill.jobs.spark.session import build_session

        spark = build_session(args.master, app_name="tokenmill-ingest")
        context = spark.sparkContext
        with StageProgress(spark, "ingest", units=len(pending)) as progress:
            records = progress.documents

            def process(uri: str) -> dict[str, Any]:
                result = _run_unit(uri, job)
                records.add(result.get("stats", {}).get("records", 0))
                return result

            results = context.parallelize(pending, numSlices=len(pending)).map(process).collect()
    units = list(done.values()) + [UnitStats.from_dict(r["stats"]) for r in results if "stats" in r]
    failed = [r["failed"] for r in results if "failed" in r]
    seconds = time.perf_counter() - started

    summary = summarize(units)
    summary.update(failed_units=failed, seconds=round(seconds, 3), skipped_units=len(done))
    write_atomic(join(args.output, "stats", "ingest.json"), json.dumps(summary, indent=1).encode(), s3)
    run_record = {
        "job": "ingest",
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "arguments": {key: value for key, value in vars(args).items() if key != "handler"},
        "recipe": json.loads(recipe.to_json()),
        "recipe_sha256": recipe.sha256,
        "versions": versions(),
        "inputs": inputs,
        "counts": {key: summary[key] for key in ("units", "records", "html_responses", "kept")},
        "seconds": round(seconds, 3),
    }
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    write_atomic(
        join(args.output, "runs", f"ingest-{stamp}.json"), json.dumps(run_record, indent=1).encode(), s3
    )

    print(format_table(summary, seconds))
    where = join(args.output, "documents")
    print(f"output: {where}  ({summary['kept']:,} documents in {len(units)} units, {seconds:.1f} s)")
    for failure in failed:
        print(f"FAILED unit {failure['unit']} ({failure['path']}): {failure['error']}", file=sys.stderr)
    if summary["unbalanced_units"]:
        print(f"ACCOUNTING ERROR in units {summary['unbalanced_units']}", file=sys.stderr)
    return EXIT_UNITS_FAILED if failed or summary["unbalanced_units"] else 0


if __name__ == "__main__":  # spark-submit jobs/ingest.py ...: the same parser as `tokenmill ingest`
    from tokenmill.jobs.cli import main

    sys.exit(main(["ingest", *sys.argv[1:]]))
