"""Report: ROOT/report.html, one self-contained page about a run, from the files its jobs wrote.

    tokenmill report -o ROOT [--s3-endpoint URL]

The record funnel with drop reasons, languages, document-length and quality-signal histograms with the
recipe's thresholds, dedup cluster sizes, tokens per shard and the trainer's loss curve when ROOT has a
metrics.jsonl. Inline SVG only: no script, font or network request, so the file opens anywhere. Spark
is not needed: the Parquet columns are read with pyarrow, one file at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenmill.jobs.stages.settings import option
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.report import write_report
from tokenmill.pipeline.report.read import holds_output
from tokenmill.pipeline.storage import S3Options
from tokenmill.pipeline.storage.uri import redact

SUMMARY = "ROOT -> ROOT/report.html: funnel, languages, signals, dedup, tokens, loss"


@dataclass(frozen=True, kw_only=True)
class ReportSettings:
    output: str = option(help="the run's root (local or s3://)", flags=("-o", "--output"), metavar="ROOT")
    s3_endpoint: str | None = option(None, "S3-compatible endpoint (also AWS_ENDPOINT_URL)", metavar="URL")


def run_report(settings: ReportSettings) -> dict[str, Any]:
    """Write ROOT/report.html; a ROOT without any tokenmill output (a typo, the wrong folder) is a
    UserError, not an empty report in a directory created for it."""
    s3 = S3Options(endpoint_url=settings.s3_endpoint)
    if not holds_output(settings.output, s3):
        raise UserError(
            f"-o {redact(settings.output)}: no tokenmill output there (no runs/, stats/, documents/, tokens/ "
            "or trainer metrics.jsonl); give the -o of an ingest, run or train"
        )
    where = write_report(settings.output, s3)
    print(f"report: {redact(where)}")
    return {"report": where}
