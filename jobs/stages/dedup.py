"""Dedup: documents -> exact and MinHash dedup -> PII scrubbing -> ROOT/final.

    tokenmill dedup -o ROOT [--input DATASET] [--preset fineweb|nemo|redpajama] [--against PRIOR_ROOT...]
                    [--url-dedup] [--priority COLUMN] [--phones] [--min-jaccard J]
    spark-submit jobs/dedup.py -o ROOT ...

Everything below is a Spark DataFrame operation over the plain per-batch functions of
`pipeline.dedup`; nothing is collected to the driver but counts.
1. keys: per document a hash of its normalized text and one MinHash key per LSH band.
2. buckets: documents sharing a text hash, a band key (or, with --url-dedup, a URL) form a bucket; each
   member is linked to the bucket's smallest id, found by a window over the bucket. A star, not all
   pairs: linear in the bucket's size, so a boilerplate bucket of any size stays cheap, and the
   connected components are the same. A MinHash link stays only if the two full signatures estimate a
   Jaccard of at least --min-jaccard (default 0.6): one shared band alone also joins pairs at
   0.35..0.5, the false merges of FineWeb's plain banding (--min-jaccard 0), which bench/dedup.py
   measures with and without the check.
3. components: `jobs.spark.components`; transitive duplicates end in one cluster labelled by its
   smallest id.
4. survivors: one per cluster, the highest --priority then the smallest id, so the result is the same on
   every rerun and for any partitioning; a cluster that holds a document of an --against run keeps none.
5. PII: survivors' e-mails and public IP addresses (and phones with --phones) replaced -> ROOT/final.

The removed documents' ids, usually far fewer than the documents, are broadcast to the tasks that read
the documents for step 5, so their texts are never shuffled.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from pyspark import Accumulator
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from tokenmill.jobs.spark.components import connected_components
from tokenmill.jobs.spark.datasets import check_output_dataset, read_dataset, write_dataset
from tokenmill.jobs.spark.progress import StageProgress
from tokenmill.jobs.stages.records import Timings, write_run_record, write_stats
from tokenmill.jobs.stages.scrub import scrub_frame
from tokenmill.jobs.stages.settings import SparkSettings, option
from tokenmill.pipeline.completion import Completion, fingerprint
from tokenmill.pipeline.dedup.keys import KEY_SCHEMA, PII_KINDS, dedup_keys
from tokenmill.pipeline.dedup.minhash import PRESETS, MinHasher
from tokenmill.pipeline.dedup.pii import PIIConfig
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.ingest.output import FINEWEB_COLUMNS
from tokenmill.pipeline.storage import S3Options, content_fingerprint, join
from tokenmill.pipeline.storage.roots import check_writable_root

SUMMARY = "documents -> exact + MinHash dedup -> PII scrubbing -> final documents"
TEXT_BUCKET, URL_BUCKET = -1, -2  # bucket "bands" besides the LSH bands 0..b-1
PRIOR_PREFIX = "prior:"  # keeps a document id seen in an earlier run distinct from the same id now
# Up to this many ids (~100 MB in each executor's memory) are broadcast; more are joined by a shuffle of
# both sides, which any number of ids survives.
BROADCAST_MAX_IDS = 2_000_000


@dataclass(frozen=True, kw_only=True)
class DedupSettings(SparkSettings):
    output: str = option(help="run root (local path or s3://)", flags=("-o", "--output"), metavar="ROOT")
    input: str | None = option(None, "Parquet with id and text (default ROOT/documents)", metavar="DATASET")
    preset: str = option("fineweb", "MinHash shingles and bands", choices=tuple(sorted(PRESETS)))
    against: tuple[str, ...] = option(
        (), "earlier run roots whose band tables count as already seen", metavar="PRIOR_ROOT"
    )
    url_dedup: bool = option(False, "also treat documents with the same URL as duplicates")
    priority: str | None = option(
        None,
        "numeric column: the highest value survives in each cluster (ties: smallest id)",
        metavar="COLUMN",
    )
    phones: bool = option(False, "also replace phone numbers")
    min_jaccard: float = option(
        0.6,
        "merge MinHash candidates only at estimated Jaccard >= J (default 0.6; 0: FineWeb's plain banding)",
        metavar="J",
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_jaccard <= 1.0:
            raise UserError(f"--min-jaccard {self.min_jaccard}: give an estimated Jaccard between 0 and 1")

    @property
    def source(self) -> str:
        return self.input or join(self.output, "documents")


def output_datasets(root: str) -> dict[str, str]:
    """The datasets dedup writes under a root, by name."""
    return {
        "clusters": join(root, "dedup", "clusters"),
        "bands": join(root, "dedup", "bands"),
        "final": join(root, "final"),
    }


def check_dedup(settings: DedupSettings) -> None:
    """The root is writable, each output is dedup's to rewrite and apart from every input, and every
    --against root holds a complete dedup of the same preset."""
    check_writable_root(settings.output, settings.s3)
    inputs = [settings.source, *(output_datasets(root)["bands"] for root in settings.against)]
    for dataset in output_datasets(settings.output).values():
        check_output_dataset(dataset, settings.s3, "dedup", inputs)
    for root in settings.against:
        _prior_marker(root, settings)


# ---- 1. keys ------------------------------------------------------------------------------------------


def document_keys(docs: DataFrame, preset: str, with_signature: bool, keyed: Accumulator) -> DataFrame:
    """(id, text_hash, band_keys, signature); `keyed` counts the documents done, for the progress line."""
    config = PRESETS[preset]

    def compute(batches):
        for batch in dedup_keys(batches, MinHasher(config), with_signature):
            keyed.add(batch.num_rows)
            yield batch

    return docs.select("id", "text").mapInArrow(compute, from_arrow_schema(KEY_SCHEMA))


def bucket_members(keys: DataFrame, docs: DataFrame, url_dedup: bool) -> DataFrame:
    """(id, band, key): one row per document and bucket it belongs to."""
    members = keys.select(
        "id", F.lit(TEXT_BUCKET).alias("band"), F.col("text_hash").alias("key")
    ).unionByName(keys.select("id", F.posexplode("band_keys").alias("band", "key")))
    if url_dedup:
        members = members.unionByName(
            docs.where(F.col("url").isNotNull()).select(
                "id", F.lit(URL_BUCKET).alias("band"), F.xxhash64("url").alias("key")
            )
        )
    return members


# ---- 2. buckets -> edges ------------------------------------------------------------------------------


def bucket_edges(members: DataFrame) -> DataFrame:
    """(a, b, band) edges linking every bucket member to the bucket's smallest id; `band` is the
    smallest band the pair shares (negative: same text or URL). The root comes from a window over the
    bucket: one shuffle of the members, where grouping the buckets and joining their roots back to the
    members took two. A member of a bucket of one is its own root and links nothing."""
    bucket = Window.partitionBy("band", "key")
    links = members.withColumn("root", F.min("id").over(bucket)).where(F.col("id") != F.col("root"))
    return links.groupBy(F.col("id").alias("a"), F.col("root").alias("b")).agg(F.min("band").alias("band"))


def verified_edges(edges: DataFrame, keys: DataFrame, min_jaccard: float) -> DataFrame:
    """Keep a MinHash link only when the two full signatures agree on at least `min_jaccard` of their
    positions (the estimated Jaccard); exact-text and URL links, and links to documents of earlier runs
    (whose signatures are not stored), always stay."""
    if min_jaccard <= 0:
        return edges.select("a", "b")
    signatures = keys.select("id", "signature")
    candidates = (
        edges.where(F.col("band") >= 0)
        .join(signatures.withColumnRenamed("id", "a").withColumnRenamed("signature", "sa"), "a")
        .join(signatures.withColumnRenamed("id", "b").withColumnRenamed("signature", "sb"), "b")
    )
    agreement = F.expr("size(filter(zip_with(sa, sb, (x, y) -> x = y), same -> same)) / size(sa)")
    confirmed = candidates.where(agreement >= min_jaccard).select("a", "b")
    always = edges.join(candidates.select("a", "b"), ["a", "b"], "left_anti").select("a", "b")
    return always.unionByName(confirmed)


# ---- 4. survivors -------------------------------------------------------------------------------------


def with_ids(frame: DataFrame, ids: DataFrame, count: int, keep: bool) -> DataFrame:
    """`frame`'s rows whose `id` is (keep) or is not (not keep) one of `ids`, `count` of them. Up to
    BROADCAST_MAX_IDS ids go to every task, which filters its part of `frame` where it lies; more are
    joined by a shuffle of both sides."""
    small = F.broadcast(ids) if count <= BROADCAST_MAX_IDS else ids
    return frame.join(small, "id", "left_semi" if keep else "left_anti")


def assign_clusters(
    keys: DataFrame, docs: DataFrame, components: DataFrame, priority: str | None, url_dedup: bool
) -> DataFrame:
    """(id, cluster_id, cluster_size, kept, reason) for every document of this run."""
    extra = ([priority] if priority else []) + (["url"] if url_dedup else [])
    nodes = keys.select("id", "text_hash")
    if extra:
        nodes = nodes.join(docs.select("id", *extra), "id")
    labelled = nodes.join(components, "id", "left").withColumn("cluster_id", F.coalesce("component", "id"))
    prior_clusters = (
        components.where(F.col("id").startswith(PRIOR_PREFIX))
        .select(F.col("component").alias("cluster_id"))
        .distinct()
        .withColumn("has_prior", F.lit(True))
    )
    labelled = labelled.join(prior_clusters, "cluster_id", "left").fillna(False, ["has_prior"])

    order = ([F.col(priority).desc_nulls_last()] if priority else []) + [F.col("id")]
    cluster = Window.partitionBy("cluster_id")
    ranked = Window.partitionBy("cluster_id").orderBy(*order)
    labelled = (
        labelled.withColumn("cluster_size", F.count("*").over(cluster))
        .withColumn("survivor", F.first("id").over(ranked))
        .withColumn("survivor_text_hash", F.first("text_hash").over(ranked))
    )
    if url_dedup:
        labelled = labelled.withColumn("survivor_url", F.first("url").over(ranked))
    kept = (~F.col("has_prior")) & (F.col("id") == F.col("survivor"))
    reason = (
        F.when(F.col("has_prior"), "prior_duplicate")
        .when(kept & (F.col("cluster_size") == 1), "unique")
        .when(kept, "survivor")
        .when(F.col("text_hash") == F.col("survivor_text_hash"), "exact_duplicate")
    )
    if url_dedup:
        reason = reason.when(F.col("url") == F.col("survivor_url"), "url_duplicate")
    return labelled.select(
        "id",
        "cluster_id",
        "cluster_size",
        kept.alias("kept"),
        reason.otherwise("fuzzy_duplicate").alias("reason"),
    )


def fineweb_order(docs: DataFrame) -> DataFrame:
    first = [name for name, _ in FINEWEB_COLUMNS if name in docs.columns]
    return docs.select(*first, *[column for column in docs.columns if column not in first])


# ---- the stage ----------------------------------------------------------------------------------------


def _completion(root: str, s3: S3Options) -> Completion:
    return Completion(join(root, "dedup", "_COMPLETE.json"), s3)


def _prior_marker(root: str, settings: DedupSettings) -> dict[str, Any]:
    """An --against root's dedup marker, checked: complete, and keyed with the same MinHash preset."""
    record = _completion(root, settings.s3).read()
    if record is None:
        raise UserError(f"--against {root}: no complete dedup there; run `tokenmill dedup -o {root}` first")
    if record["settings"]["preset"] != settings.preset:
        raise UserError(
            f"--against {root} used --preset {record['settings']['preset']}, this run {settings.preset}; "
            "band keys of different presets never match"
        )
    return record


def _prior_members(spark: SparkSession, settings: DedupSettings) -> DataFrame | None:
    tables = [
        read_dataset(spark, output_datasets(root)["bands"], settings.s3).select(
            F.concat(F.lit(PRIOR_PREFIX), "id").alias("id"), "band", "key"
        )
        for root in settings.against
    ]
    if not tables:
        return None
    union = tables[0]
    for table in tables[1:]:
        union = union.unionByName(table)
    return union


def _fingerprint(settings: DedupSettings) -> str:
    s3 = settings.s3
    return fingerprint(
        input=content_fingerprint(settings.source, s3),
        against=[content_fingerprint(output_datasets(root)["bands"], s3) for root in settings.against],
        settings=settings.output_settings(),
    )


def run_dedup(spark: SparkSession, settings: DedupSettings) -> dict[str, Any]:
    """Cluster assignments -> ROOT/dedup, survivors scrubbed -> ROOT/final; skipped when current."""
    check_dedup(settings)
    completion = _completion(settings.output, settings.s3)
    print_ = _fingerprint(settings)
    if (record := completion.current(print_)) is not None:
        print(
            f"dedup: {settings.output} is already deduplicated for these inputs and settings; nothing to do"
        )
        return record["stats"]
    with StageProgress(spark, "dedup") as progress:
        stats = _deduplicate(spark, settings, completion, print_, progress.documents)
    write_stats(settings.output, "dedup", stats, settings.s3)
    write_run_record(settings.output, "dedup", settings, stats, settings.s3)
    print(format_table(stats))
    if not stats["balanced"]:
        print("ACCOUNTING ERROR: docs in != survivors + removed", file=sys.stderr)
    return stats


def _deduplicate(
    spark: SparkSession, settings: DedupSettings, completion: Completion, print_: str, keyed: Accumulator
) -> dict[str, Any]:
    s3, source = settings.s3, settings.source
    outputs = output_datasets(settings.output)
    timings = Timings()
    docs = read_dataset(spark, source, s3)
    needed = {"id", "text"} | ({settings.priority} if settings.priority else set())
    needed |= {"url"} if settings.url_dedup else set()
    if missing := needed - set(docs.columns):
        raise UserError(f"dedup: {source} lacks the columns {sorted(missing)}")
    # tasks read only the columns asked for (a select on `docs` would read every column, text included);
    # one pass counts the rows and the distinct ids, a null id (uncounted by count_distinct) as one more
    ids = read_dataset(spark, source, s3, ["id"])
    with timings.phase("input"):
        counts = ids.agg(F.count("*"), F.count_distinct("id"), F.count("id")).first()
    docs_in, distinct_ids = counts[0], counts[1] + (counts[2] < counts[0])
    if duplicate_ids := docs_in - distinct_ids:
        raise UserError(f"dedup: {source} has {duplicate_ids} rows whose id is not unique; ids must be")

    completion.begin()  # from here until the marker is written, ROOT/dedup and ROOT/final are not complete
    with timings.phase("keys"):
        keys = document_keys(docs, settings.preset, settings.min_jaccard > 0, keyed).localCheckpoint()
        members = bucket_members(keys, docs, settings.url_dedup).localCheckpoint()
    with timings.phase("components"):
        prior = _prior_members(spark, settings)
        graph_members = members if prior is None else members.unionByName(prior)
        components = connected_components(
            verified_edges(bucket_edges(graph_members), keys, settings.min_jaccard)
        )
    with timings.phase("clusters"):
        clusters = assign_clusters(keys, docs, components, settings.priority, settings.url_dedup)
        clusters = clusters.localCheckpoint()
        write_dataset(clusters, outputs["clusters"], s3, writer="dedup")
        write_dataset(members, outputs["bands"], s3, writer="dedup")
        reasons = {row["reason"]: row["count"] for row in clusters.groupBy("reason").count().collect()}
    with timings.phase("pii_and_write"):
        removed = docs_in - reasons.get("unique", 0) - reasons.get("survivor", 0)
        survivors = with_ids(docs, clusters.where(~F.col("kept")).select("id"), removed, keep=False)
        final = fineweb_order(scrub_frame(survivors, PIIConfig(phones=settings.phones)))
        write_dataset(final, outputs["final"], s3, writer="dedup")

    sizes = clusters.select("cluster_id", "cluster_size").distinct().groupBy("cluster_size").count().collect()
    written = read_dataset(spark, outputs["final"], s3, [f"pii_{kind}" for kind in PII_KINDS])
    pii = written.agg(F.count("*").alias("rows"), *[F.sum(f"pii_{kind}").alias(kind) for kind in PII_KINDS])
    pii = pii.first().asDict()
    survivors_out = pii.pop("rows")
    stats: dict[str, Any] = {
        "docs_in": docs_in,
        "survivors": survivors_out,
        "removed": docs_in - survivors_out,
        "exact_duplicates": reasons.get("exact_duplicate", 0),
        "fuzzy_duplicates": reasons.get("fuzzy_duplicate", 0),
        "url_duplicates": reasons.get("url_duplicate", 0),
        "prior_duplicates": reasons.get("prior_duplicate", 0),
        "reasons": dict(sorted(reasons.items())),
        "clusters_by_size": {
            str(row["cluster_size"]): row["count"] for row in sorted(sizes, key=lambda r: r[0])
        },
        "pii_replacements": {kind: int(pii[kind] or 0) for kind in PII_KINDS},
        "preset": settings.preset,
        "against": list(settings.against),
        "min_jaccard": settings.min_jaccard,
        "seconds": timings.seconds,
        "total_seconds": timings.total(),
    }
    stats["balanced"] = stats["docs_in"] == stats["survivors"] + sum(
        count for reason, count in reasons.items() if reason not in ("unique", "survivor")
    )
    if stats["balanced"]:
        completion.commit(print_, {"settings": {"preset": settings.preset}, "stats": stats})
    return stats


def format_table(stats: dict[str, Any]) -> str:
    rows = [
        ("documents in", stats["docs_in"]),
        ("exact duplicates", stats["exact_duplicates"]),
        ("fuzzy duplicates", stats["fuzzy_duplicates"]),
        ("URL duplicates", stats["url_duplicates"]),
        ("seen in earlier runs", stats["prior_duplicates"]),
        ("survivors", stats["survivors"]),
    ]
    rows += [(f"PII {kind} replaced", count) for kind, count in stats["pii_replacements"].items()]
    return "\n".join(f"{label:<32}{value:>12,}" for label, value in rows)
