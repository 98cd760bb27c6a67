"""Run: the whole pipeline, ingest -> dedup [-> select] -> tokenize -> report, in one Spark session,
each stage resumable.

    tokenmill run INPUT... -o ROOT [every option of ingest, dedup, select and tokenize] [--no-report]
    tokenmill run --crawl latest|CC-MAIN-YYYY-WW -o ROOT [--index FILE|URL] [--cc-base URL]
    tokenmill run INPUT... -o ROOT --by score_<name> (--keep-top FRACTION | --min-score X) [--buckets N]
    spark-submit jobs/run.py ... (the same, on a cluster)

The stage functions are called directly with settings built from one parser that holds every stage's
options, so `run` accepts all of them. With --by, select runs after dedup and tokenize reads
ROOT/selected instead of ROOT/final; without it there is no select stage. Each stage runs only what is
not complete: ingest skips units whose marker is current, dedup, select and tokenize skip when their
marker's fingerprint matches the content of their input and their settings. A rerun after a crash
therefore resumes where the run stopped, a rerun of a finished run does nothing, and a change upstream
reruns everything below it.

With --crawl, the crawl is looked up in Common Crawl's collinfo.json (--index), its warc.paths.gz
manifest is read against --cc-base, and the crawl gets its own run root, ROOT/crawls/<crawl id>.
Its documents are deduplicated against every crawl processed before under ROOT (dedup --against), so
a schedule that runs `--crawl latest` each month never admits a document of an earlier month again.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from tokenmill.jobs.stages.dedup import DedupSettings, check_dedup, run_dedup
from tokenmill.jobs.stages.ingest import IngestSettings, check_ingest, run_ingest
from tokenmill.jobs.stages.select import SelectSettings, check_select_output, run_select, selected_dataset
from tokenmill.jobs.stages.settings import SparkSettings, from_options, option
from tokenmill.jobs.stages.tokenize import TokenizeSettings, load_tokenizer, run_tokenize, upsample_table
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.ingest.crawls import (
    DEFAULT_INDEX,
    crawl_root,
    load_index,
    processed,
    resolve,
    warc_manifest,
)
from tokenmill.pipeline.report import write_report
from tokenmill.pipeline.storage import S3Options, join

SUMMARY = "the whole pipeline: ingest -> dedup [-> select] -> tokenize -> report, each stage resumable"


@dataclass(frozen=True, kw_only=True)
class RunSettings(SparkSettings):
    """run's own options; the stages' options are added after these (see OPTION_SOURCES)."""

    inputs: tuple[str, ...] = option(
        (), "as for `tokenmill ingest` (or use --crawl)", metavar="INPUT", positional=True
    )
    output: str = option(help="run root (local path or s3://)", flags=("-o", "--output"), metavar="ROOT")
    crawl: str | None = option(None, "process a Common Crawl crawl", metavar="latest|CC-MAIN-YYYY-WW")
    index: str = option(DEFAULT_INDEX, "collinfo.json (with --crawl)", metavar="FILE|URL")
    encoding: str = option("gpt2", "tokenizer (default gpt2)", metavar="NAME|PATH")
    no_report: bool = option(False, "skip ROOT/report.html")


# Every option of these, each name once (run's own first); `input` is chained, not an option of run.
OPTION_SOURCES = (RunSettings, IngestSettings, DedupSettings, SelectSettings, TokenizeSettings)
SELECT_RULE = ("keep_top", "min_score", "buckets")  # options that mean nothing without --by
CHAINED = frozenset({"input"})


@dataclass(frozen=True)
class PipelineSettings:
    """The settings of each stage of one run, resolved (crawl, root, inputs) before Spark starts."""

    run: RunSettings
    ingest: IngestSettings
    dedup: DedupSettings
    select: SelectSettings | None  # None: no --by, tokenize reads ROOT/final
    tokenize: TokenizeSettings
    crawl_processed: bool = False  # --crawl of a crawl whose token set is complete: nothing to do

    @property
    def output(self) -> str:
        """The root whose lock the run holds: -o, under which every crawl root of --crawl lies."""
        return self.run.output

    @property
    def s3(self) -> S3Options:
        return self.run.s3

    @property
    def force(self) -> bool:
        return self.run.force


def pipeline_settings(namespace: argparse.Namespace) -> PipelineSettings:
    """The stages' settings from run's parsed options; with --crawl, the crawl's root, manifest and
    earlier crawls are looked up here."""
    run = from_options(RunSettings, namespace)
    s3 = S3Options(endpoint_url=run.s3_endpoint)
    root, inputs, against, dump = run.output, run.inputs, tuple(namespace.against), namespace.dump
    crawl_processed = False
    if run.crawl:
        if inputs:
            raise UserError("run: give INPUT files or --crawl, not both")
        crawls = load_index(run.index, s3)
        crawl = resolve(crawls, run.crawl)
        root = crawl_root(run.output, crawl)
        crawl_processed = processed(run.output, crawl, s3)
        earlier = [other for other in crawls if other != crawl and processed(run.output, other, s3)]
        inputs = (join(namespace.cc_base, warc_manifest(crawl)),)
        against += tuple(crawl_root(run.output, other) for other in earlier)
        dump = dump or crawl.id
    elif not inputs:
        raise UserError("run: give INPUT files (WARCs, directories, manifests) or --crawl")
    select = None
    if namespace.by is not None:
        select = from_options(SelectSettings, namespace, output=root, input=None)
    elif given := [name for name in SELECT_RULE if getattr(namespace, name) is not None]:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise UserError(f"run: {flags} select documents by a score; give --by score_<name> too")
    return PipelineSettings(
        run=run,
        ingest=from_options(IngestSettings, namespace, inputs=inputs, output=root, dump=dump),
        dedup=from_options(DedupSettings, namespace, output=root, input=None, against=against),
        select=select,
        tokenize=from_options(
            TokenizeSettings, namespace, output=root, input=selected_dataset(root) if select else None
        ),
        crawl_processed=crawl_processed,
    )


def _check_recipe_scores(ingest: IngestSettings, by: str) -> None:
    """--by names a score that ingest will add: a [[classifiers]] entry of the recipe, so a misspelt
    name stops the run now, not after hours of ingest and dedup."""
    recipe = ingest.load_recipe()
    columns = [classifier.column for classifier in recipe.classifiers]
    if by not in columns:
        adds = f"adds only {', '.join(columns)}" if columns else "has no [[classifiers]]"
        raise UserError(
            f"run: --by {by}: the recipe {recipe.name} {adds}; name the classifier in the recipe "
            "(--recipe FILE with a [[classifiers]] entry)"
        )


def check_run(settings: PipelineSettings) -> None:
    check_ingest(settings.ingest)
    check_dedup(settings.dedup)
    if settings.select is not None:  # its input, ROOT/final, comes later, from dedup
        check_select_output(settings.select)
        _check_recipe_scores(settings.ingest, settings.select.by)
    load_tokenizer(settings.tokenize)
    upsample_table(settings.tokenize)  # a bad --upsample-table shows before ingest, not after dedup


def run_run(spark: SparkSession, settings: PipelineSettings) -> dict[str, Any]:
    """ingest -> dedup [-> select] -> tokenize -> report; a crawl already processed is left as it is."""
    started = time.perf_counter()
    root = settings.ingest.output
    s3 = settings.ingest.s3
    if settings.crawl_processed:
        print(f"run: {settings.run.crawl} is already processed in {root}; nothing to do")
        return {"root": root}
    print("run: tokenmill ingest ...", flush=True)
    ingest = run_ingest(spark, settings.ingest)
    print("run: tokenmill dedup ...", flush=True)
    dedup = run_dedup(spark, settings.dedup)
    stages = {"root": root, "ingest": ingest, "dedup": dedup}
    if not dedup["balanced"]:
        return stages
    if settings.select is not None:
        print("run: tokenmill select ...", flush=True)
        stages["select"] = run_select(spark, settings.select)
        if not stages["select"]["balanced"]:
            return stages
    print("run: tokenmill tokenize ...", flush=True)
    stages["tokenize"] = run_tokenize(spark, settings.tokenize)
    if not settings.run.no_report:
        print(f"run: report {write_report(root, s3)}")
    print(f"run: complete in {time.perf_counter() - started:,.1f} s -> {root}")
    return stages
