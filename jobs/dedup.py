"""Dedup: documents -> exact and MinHash dedup -> PII scrubbing -> ROOT/final (DESIGN.md §3-4).

    tokenmill dedup -o ROOT [--input DATASET] [--preset fineweb|nemo|redpajama] [--against PRIOR_ROOT...]
                    [--master URL] [--url-dedup] [--priority COLUMN] [--phones]
    spark-submit jobs/dedup.py -o ROOT ...

Everything below is a Spark DataFrame operation; nothing is collected to the driver but counts.
1. keys: per document a hash of its normalized text and one MinHash key per LSH band (pipeline.dedup).
2. buckets: documents sharing a text hash, a band key (or, with --url-dedup, a URL) form a bucket; each
   member is linked to the bucket's smallest id. A star, not all pairs: linear in the bucket's size, so a
   boilerplate bucket of any size stays cheap, and the connected components are the same.
3. components: alternating large-star / small-star rounds (Kiveris et al., 2014) until the edge set
   stops changing; transitive duplicates end in one cluster labelled by its smallest id.
4. survivors: one per cluster, the highest --priority then the smallest id, so the result is the same on
   every rerun and for any partitioning; a cluster that holds a document of a --against run keeps none.
5. PII: survivors' e-mails and public IPv4 addresses (and phones with --phones) replaced -> ROOT/final.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any

from pyspark import Accumulator
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, StructField, StructType

from tokenmill.jobs.spark.progress import StageProgress
from tokenmill.jobs.spark.session import add_cluster_arguments
from tokenmill.pipeline.dedup.keys import PII_KINDS, dedup_keys, scrub_batches
from tokenmill.pipeline.dedup.minhash import PRESETS, MinHasher
from tokenmill.pipeline.dedup.pii import PIIConfig
from tokenmill.pipeline.ingest.output import FINEWEB_COLUMNS
from tokenmill.pipeline.storage import S3Options, exists, join, read_bytes, write_atomic

TEXT_BUCKET, URL_BUCKET = -1, -2  # bucket "bands" besides the LSH bands 0..b-1
PRIOR_PREFIX = "prior:"  # keeps a document id seen in an earlier run distinct from the same id now
KEY_DDL = "id string, text_hash long, band_keys array<long>, signature array<long>"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o", "--output", required=True, metavar="ROOT", help="run root (local path or s3://)"
    )
    parser.add_argument(
        "--input", default=None, metavar="DATASET", help="Parquet with id and text (default ROOT/documents)"
    )
    parser.add_argument(
        "--preset", default="fineweb", choices=sorted(PRESETS), help="MinHash shingles and bands"
    )
    parser.add_argument(
        "--against",
        nargs="*",
        default=[],
        metavar="PRIOR_ROOT",
        help="earlier run roots whose band tables count as already seen",
    )
    parser.add_argument(
        "--url-dedup", action="store_true", help="also treat documents with the same URL as duplicates"
    )
    parser.add_argument(
        "--priority",
        default=None,
        metavar="COLUMN",
        help="numeric column: the highest value survives in each cluster (ties: smallest id)",
    )
    parser.add_argument("--phones", action="store_true", help="also replace phone numbers")
    parser.add_argument(
        "--min-jaccard",
        type=float,
        default=0.0,
        metavar="J",
        help="verify MinHash candidates: drop links with estimated Jaccard < J (0: off, as FineWeb)",
    )
    add_cluster_arguments(parser)


# ---- 1. keys ------------------------------------------------------------------------------------------


def document_keys(docs: DataFrame, preset: str, with_signature: bool, keyed: Accumulator) -> DataFrame:
    """(id, text_hash, band_keys, signature); `keyed` counts the documents done, for the progress line."""
    config = PRESETS[preset]

    def compute(batches):
        for batch in dedup_keys(batches, MinHasher(config), with_signature):
            keyed.add(batch.num_rows)
            yield batch

    return docs.select("id", "text").mapInArrow(compute, KEY_DDL)


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
    smallest band the pair shares (negative: same text or URL)."""
    roots = (
        members.groupBy("band", "key")
        .agg(F.min("id").alias("root"), F.count("*").alias("size"))
        .where(F.col("size") > 1)
    )
    links = members.join(roots, ["band", "key"]).where(F.col("id") != F.col("root"))
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


# ---- 3. connected components --------------------------------------------------------------------------


def _large_star(edges: DataFrame) -> DataFrame:
    """Link every neighbour larger than a node to the smallest node of its neighbourhood."""
    both = edges.select(F.col("a").alias("u"), F.col("b").alias("v")).unionByName(
        edges.select(F.col("b").alias("u"), F.col("a").alias("v"))
    )
    smallest = Window.partitionBy("u")
    linked = both.withColumn("m", F.least(F.col("u"), F.min("v").over(smallest)))
    return (
        linked.where(F.col("v") > F.col("u")).select(F.col("v").alias("a"), F.col("m").alias("b")).distinct()
    )


def _small_star(edges: DataFrame) -> DataFrame:
    """Link every node and its smaller neighbours to the smallest of them."""
    down = edges.select(F.greatest("a", "b").alias("u"), F.least("a", "b").alias("v"))
    linked = down.withColumn("m", F.min("v").over(Window.partitionBy("u")))
    out = linked.select(F.col("v").alias("a"), F.col("m").alias("b")).unionByName(
        linked.select(F.col("u").alias("a"), F.col("m").alias("b"))
    )
    return out.where(F.col("a") != F.col("b")).distinct()


def connected_components(edges: DataFrame, max_rounds: int = 64) -> DataFrame:
    """(id, component) for every node on an edge; component = the smallest id of its component."""
    current = edges.select("a", "b").localCheckpoint()
    for _ in range(max_rounds):
        following = _small_star(_large_star(current)).localCheckpoint()
        if following.count() == current.count() and following.subtract(current).isEmpty():
            break
        current = following
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    return (
        current.select(F.col("a").alias("id"), F.col("b").alias("component"))
        .unionByName(current.select(F.col("b").alias("id"), F.col("b").alias("component")))
        .distinct()
    )


# ---- 4. survivors -------------------------------------------------------------------------------------


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


# ---- 5. PII -------------------------------------------------------------------------------------------


def scrub_frame(docs: DataFrame, config: PIIConfig) -> DataFrame:
    schema = StructType(
        docs.schema.fields + [StructField(f"pii_{kind}", IntegerType()) for kind in PII_KINDS]
    )

    def compute(batches):
        yield from scrub_batches(batches, config)

    return docs.mapInArrow(compute, schema)


def fineweb_order(docs: DataFrame) -> DataFrame:
    first = [name for name, _ in FINEWEB_COLUMNS if name in docs.columns]
    return docs.select(*first, *[column for column in docs.columns if column not in first])


# ---- the job ------------------------------------------------------------------------------------------


def _prior_members(spark: SparkSession, roots: list[str], preset: str, s3: S3Options) -> DataFrame | None:
    tables = []
    for root in roots:
        config_path = join(root, "dedup", "config.json")
        if not exists(config_path, s3):
            raise SystemExit(f"dedup: --against {root}: no {config_path}; run `tokenmill dedup` there first")
        prior_preset = json.loads(read_bytes(config_path, s3))["preset"]
        if prior_preset != preset:
            raise SystemExit(f"dedup: --against {root} used preset {prior_preset!r}, this run {preset!r}")
        bands = spark.read.parquet(join(root, "dedup", "bands"))
        tables.append(bands.select(F.concat(F.lit(PRIOR_PREFIX), "id").alias("id"), "band", "key"))
    if not tables:
        return None
    union = tables[0]
    for table in tables[1:]:
        union = union.unionByName(table)
    return union


def _fingerprint(docs: DataFrame, args: argparse.Namespace) -> str:
    names = ("preset", "against", "url_dedup", "priority", "phones", "min_jaccard")
    settings = {key: getattr(args, key) for key in names}
    material = json.dumps({"files": sorted(docs.inputFiles()), **settings}, sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


def run(args: argparse.Namespace) -> int:
    from tokenmill.jobs.spark.session import build_session

    spark = build_session(args.master, app_name="tokenmill-dedup")
    with StageProgress(spark, "dedup") as progress:
        return deduplicate(spark, args, progress.documents)


def deduplicate(spark: SparkSession, args: argparse.Namespace, keyed: Accumulator) -> int:
    started = time.perf_counter()
    s3 = S3Options(endpoint_url=args.s3_endpoint)
    root = args.output
    source = args.input or join(root, "documents")
    docs = spark.read.parquet(source)
    missing = {"id", "text"} - set(docs.columns) | (
        {args.priority} - set(docs.columns) if args.priority else set()
    )
    if args.url_dedup and "url" not in docs.columns:
        missing.add("url")
    if missing:
        raise SystemExit(f"dedup: {source} lacks the columns {sorted(missing)}")

    marker = join(root, "dedup", "_DONE.json")
    fingerprint = _fingerprint(docs, args)
    if exists(marker, s3) and json.loads(read_bytes(marker, s3)).get("fingerprint") == fingerprint:
        print(f"dedup: {root} is already deduplicated for these inputs and settings; nothing to do")
        return 0

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    docs_in = docs.count()
    duplicate_ids = docs_in - docs.select("id").distinct().count()
    if duplicate_ids:
        raise SystemExit(f"dedup: {source} has {duplicate_ids} rows whose id is not unique")
    keys = document_keys(docs, args.preset, args.min_jaccard > 0, keyed).localCheckpoint()
    members = bucket_members(keys, docs, args.url_dedup).localCheckpoint()
    seconds["keys"] = time.perf_counter() - clock

    clock = time.perf_counter()
    prior = _prior_members(spark, args.against, args.preset, s3)
    graph_members = members if prior is None else members.unionByName(prior)
    components = connected_components(verified_edges(bucket_edges(graph_members), keys, args.min_jaccard))
    seconds["components"] = time.perf_counter() - clock

    clock = time.perf_counter()
    clusters = assign_clusters(keys, docs, components, args.priority, args.url_dedup).localCheckpoint()
    clusters.write.mode("overwrite").parquet(join(root, "dedup", "clusters"))
    members.write.mode("overwrite").parquet(join(root, "dedup", "bands"))
    seconds["clusters"] = time.perf_counter() - clock

    clock = time.perf_counter()
    survivors = docs.join(clusters.where("kept").select("id"), "id", "left_semi")
    final = fineweb_order(scrub_frame(survivors, PIIConfig(phones=args.phones)))
    final.write.mode("overwrite").parquet(join(root, "final"))
    seconds["pii_and_write"] = time.perf_counter() - clock

    reasons = {row["reason"]: row["count"] for row in clusters.groupBy("reason").count().collect()}
    sizes = clusters.select("cluster_id", "cluster_size").distinct().groupBy("cluster_size").count().collect()
    written = spark.read.parquet(join(root, "final"))
    pii = written.agg(*[F.sum(f"pii_{kind}").alias(kind) for kind in PII_KINDS]).first().asDict()
    survivors_out = written.count()
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
        "preset": args.preset,
        "against": args.against,
        "min_jaccard": args.min_jaccard,
        "seconds": {stage: round(value, 3) for stage, value in seconds.items()},
        "total_seconds": round(time.perf_counter() - started, 3),
    }
    stats["balanced"] = stats["docs_in"] == stats["survivors"] + sum(
        count for reason, count in reasons.items() if reason not in ("unique", "survivor")
    )
    write_atomic(join(root, "dedup", "config.json"), json.dumps({"preset": args.preset}).encode(), s3)
    write_atomic(join(root, "stats", "dedup.json"), json.dumps(stats, indent=1).encode(), s3)
    write_atomic(marker, json.dumps({"fingerprint": fingerprint}).encode(), s3)
    print(format_table(stats))
    if not stats["balanced"]:
        print("ACCOUNTING ERROR: docs in != survivors + removed", file=sys.stderr)
        return 3
    return 0


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
    lines = [f"{label:<32}{value:>12,}" for label, value in rows]
    lines.append(f"{'seconds':<32}{stats['total_seconds']:>12,.1f}")
    return "\n".join(lines)


if __name__ == "__main__":  # spark-submit jobs/dedup.py ...: the same parser as `tokenmill dedup`
    from tokenmill.jobs.cli import main

    sys.exit(main(["dedup", *sys.argv[1:]]))
