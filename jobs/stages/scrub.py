"""Scrub: PII replacement alone, on any Parquet dataset with `id` and `text`.

    tokenmill scrub --input DATASET -o OUT [--phones]
    spark-submit jobs/scrub.py --input DATASET -o OUT ...

The same columns come out, `text` scrubbed, plus `pii_email`, `pii_ip`, `pii_ipv6`, `pii_phone`: the
replacements made in each document (a dataset that already has them, such as ROOT/final, gets them
recounted). OUT must be new, empty or an earlier scrub's output, apart from the input; it holds the part
files, their commit record (`jobs.spark.datasets`) and a completion marker, and files scrub did not write
are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StructField, StructType

from tokenmill.jobs.spark.datasets import check_output_dataset, read_dataset, write_dataset
from tokenmill.jobs.stages.settings import SparkSettings, option
from tokenmill.pipeline.completion import Completion, fingerprint
from tokenmill.pipeline.dedup.keys import PII_KINDS, scrub_batches
from tokenmill.pipeline.dedup.pii import PIIConfig
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import content_fingerprint, join
from tokenmill.pipeline.storage.roots import check_writable_root

SUMMARY = "PII scrubbing alone, on any id,text Parquet"


@dataclass(frozen=True, kw_only=True)
class ScrubSettings(SparkSettings):
    input: str = option(help="Parquet with id and text", metavar="DATASET")
    output: str = option(help="where the scrubbed Parquet goes", flags=("-o", "--output"), metavar="OUT")
    phones: bool = option(False, "also replace phone numbers")


def check_scrub(settings: ScrubSettings) -> None:
    """OUT is writable, apart from the input, and empty or an earlier scrub's output."""
    check_writable_root(settings.output, settings.s3)
    check_output_dataset(settings.output, settings.s3, "scrub", [settings.input])


def scrub_frame(docs: DataFrame, config: PIIConfig) -> DataFrame:
    """`text` scrubbed and one `pii_<kind>` count column per kind (replacing any it already had)."""
    counts = {f"pii_{kind}" for kind in PII_KINDS}
    fields = [field for field in docs.schema.fields if field.name not in counts]
    schema = StructType(fields + [StructField(f"pii_{kind}", IntegerType()) for kind in PII_KINDS])
    kept = docs.select(*[field.name for field in fields])

    def compute(batches):
        yield from scrub_batches(batches, config)

    return kept.mapInArrow(compute, schema)


def run_scrub(spark: SparkSession, settings: ScrubSettings) -> dict[str, Any]:
    check_scrub(settings)
    s3 = settings.s3
    completion = Completion(join(settings.output, "_COMPLETE.json"), s3)
    print_ = fingerprint(input=content_fingerprint(settings.input, s3), phones=settings.phones)
    if (record := completion.current(print_)) is not None:
        print(f"scrub: {settings.output} is already scrubbed from these inputs and settings; nothing to do")
        return record["stats"]
    docs = read_dataset(spark, settings.input, s3)
    if missing := {"id", "text"} - set(docs.columns):
        raise UserError(f"scrub: {settings.input} lacks the columns {sorted(missing)}")
    completion.begin()
    write_dataset(scrub_frame(docs, PIIConfig(phones=settings.phones)), settings.output, s3, writer="scrub")
    written = read_dataset(spark, settings.output, s3)
    totals = written.agg(
        F.count("*").alias("documents"), *[F.sum(f"pii_{k}").alias(k) for k in PII_KINDS]
    ).first()
    stats = {
        "documents": totals["documents"],
        "pii_replacements": {k: int(totals[k] or 0) for k in PII_KINDS},
    }
    completion.commit(print_, {"stats": stats})
    replaced = ", ".join(f"{count:,} {kind}" for kind, count in stats["pii_replacements"].items())
    print(f"scrub: replaced {replaced} in {stats['documents']:,} documents -> {settings.output}")
    return stats
