"""Tokenize: final documents -> shuffled token shards for trainers, in llm.c's format.

    tokenmill tokenize -o ROOT --encoding NAME|PATH [--input DATASET] [--shard-tokens N]
                       [--val-tokens N] [--seed S] [--upsample-by COLUMN [--upsample-table FILE]]
                       [--master URL]
    spark-submit jobs/tokens.py -o ROOT --encoding gpt2 ...

Input: ROOT/final from `tokenmill dedup`, or any Parquet with `id` and `text` (--input). Output:
ROOT/tokens/<tokenizer>/ with val_000000.* (shard 0, validation) and train_000001.*, ... each as
`.bin` (llm.c format: uint16, or uint32 with its own magic when the vocabulary needs it), `.idx`
(uint64 document starts) and `.parquet` (id, tokens, offset, piece), and manifest.json, written last.

0. rehydrate (--upsample-by only): each document repeated by the size of its duplicate cluster
   (tokenizer.upsample, FineWeb-2's table by default), the copies numbered 0, 1, ...
1. encode: per Arrow batch, EOT + encode_ordinary(text), packed in the shard dtype.
2. shuffle: documents sorted by xxhash64(seed, id) (a copy k > 0 by xxhash64(seed, id, k)), so the order
   depends on the seed and the ids only, never on the partitioning: the same seed gives byte-identical
   shards, and the copies of a document land apart.
3. layout: per-partition token totals give each document its start in the stream (tokenizer.layout).
4. write: one task per shard writes and commits its three files; the driver writes the manifest.
manifest.json is the completion marker (`pipeline.completion`): it holds the fingerprint of the input's
content and the settings, so a rerun with the same inputs and settings is skipped, any change reruns,
and after a crash a rerun rewrites the same bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import Accumulator
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from tokenmill.jobs.spark.datasets import overlap, read_dataset
from tokenmill.jobs.spark.progress import StageProgress
from tokenmill.jobs.stages.dedup import output_datasets
from tokenmill.jobs.stages.records import Timings, versions, write_stats
from tokenmill.jobs.stages.settings import SparkSettings, option
from tokenmill.pipeline.completion import Completion, fingerprint
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.recipe import latest_ingest_recipe
from tokenmill.pipeline.storage import (
    S3Options,
    content_fingerprint,
    delete,
    directory_prefix,
    join,
    list_files,
    remove_stale_temps,
)
from tokenmill.pipeline.storage.roots import check_writable_root
from tokenmill.tokenizer.encode import TOKENS_SCHEMA, encode_batches
from tokenmill.tokenizer.encodings import ENDOFTEXT, EncodingSpec, encoding_for, load_spec
from tokenmill.tokenizer.layout import PIECE_SCHEMA, Layout, pieces, running_starts
from tokenmill.tokenizer.shards import ShardFormat, dtype_name, format_for_vocab
from tokenmill.tokenizer.upsample import COPY_FIELD, FINEWEB2, UpsampleTable, load_table, repeat_documents
from tokenmill.tokenizer.writer import ShardWriter

SUMMARY = "final documents -> shuffled token shards (.bin, .idx, .parquet, manifest)"
DEFAULT_SHARD_TOKENS = 100_000_000
DEFAULT_VAL_TOKENS = 10_000_000
DEFAULT_VAL_FRACTION = 0.1
FORMAT = "tokenmill-tokens/1"
# dedup's cluster size (joined from ROOT/dedup/clusters when the input lacks it), FineWeb-2's datasets' own
UPSAMPLE_COLUMNS = ("cluster_size", "minhash_cluster_size")


@dataclass(frozen=True, kw_only=True)
class TokenizeSettings(SparkSettings):
    output: str = option(help="run root (local path or s3://)", flags=("-o", "--output"), metavar="ROOT")
    encoding: str = option(
        help="gpt2, r50k_base, p50k_base, cl100k_base, o200k_base, or a tokenizer directory from "
        "`tokenmill train-tokenizer`",
        metavar="NAME|PATH",
    )
    input: str | None = option(None, "Parquet with id and text (default ROOT/final)", metavar="DATASET")
    shard_tokens: int = option(
        DEFAULT_SHARD_TOKENS, f"tokens per training shard (default {DEFAULT_SHARD_TOKENS:,})", metavar="N"
    )
    val_tokens: int | None = option(
        None,
        f"at least this many tokens of whole documents go to shard 0 (default: {DEFAULT_VAL_TOKENS:,} "
        f"or {DEFAULT_VAL_FRACTION * 100:.0f}%% of the corpus, whichever is smaller)",
        metavar="N",
    )
    seed: int = option(0, "shuffle seed (default 0)", metavar="S")
    upsample_by: str | None = option(
        None,
        "repeat documents by the size of their duplicate cluster, as FineWeb-2 rehydrates: cluster_size "
        "(tokenmill dedup's) or minhash_cluster_size (FineWeb-2's datasets)",
        metavar="COLUMN",
    )
    upsample_table: str | None = option(
        None, "TOML table of copies by cluster size (default: FineWeb-2's)", metavar="FILE"
    )

    def __post_init__(self) -> None:
        if self.upsample_by is not None and self.upsample_by not in UPSAMPLE_COLUMNS:
            raise UserError(
                f"--upsample-by {self.upsample_by}: give a column of cluster sizes, "
                f"{' or '.join(UPSAMPLE_COLUMNS)}"
            )
        if self.upsample_table is not None and self.upsample_by is None:
            raise UserError("--upsample-table is used with --upsample-by; give both or neither")
        if not 1 <= self.shard_tokens < 1 << 31:
            raise UserError(f"--shard-tokens {self.shard_tokens}: a shard holds 1 to 2**31 - 1 tokens")
        if self.val_tokens is not None and self.val_tokens < 0:
            raise UserError(f"--val-tokens {self.val_tokens}: give 0 or more validation tokens")

    @property
    def source(self) -> str:
        return self.input or join(self.output, "final")


def load_tokenizer(settings: TokenizeSettings) -> EncodingSpec:
    """The tokenizer, its ranks parsed and checked here on the driver, not in a task."""
    try:
        spec = load_spec(settings.encoding, settings.s3)
        encoding_for(spec)
    except ValueError as exc:
        raise UserError(f"--encoding {settings.encoding}: {exc}") from None
    if ENDOFTEXT not in spec.special_tokens:
        raise UserError(f"--encoding {settings.encoding}: {spec.name} has no {ENDOFTEXT} to start documents")
    return spec


def upsample_table(settings: TokenizeSettings) -> UpsampleTable | None:
    """The rehydration table, or None without --upsample-by."""
    if settings.upsample_by is None:
        return None
    if settings.upsample_table is None:
        return FINEWEB2
    try:
        return load_table(settings.upsample_table)
    except ValueError as exc:
        raise UserError(f"--upsample-table {settings.upsample_table}: {exc}") from None


def tokens_directory(settings: TokenizeSettings, spec: EncodingSpec) -> str:
    return join(settings.output, "tokens", spec.name)


def check_tokenize(settings: TokenizeSettings) -> EncodingSpec:
    """The tokenizer (it loads), the upsampling table (it parses), the root is writable, and the input
    lies apart from the shards."""
    spec = load_tokenizer(settings)
    upsample_table(settings)
    directory = tokens_directory(settings, spec)
    check_writable_root(settings.output, settings.s3)
    if overlap(settings.source, directory):
        raise UserError(
            f"tokenize: the input {settings.source} and the output {directory} overlap; "
            "give the documents' own directory as --input"
        )
    return spec


# ---- 0. rehydrate -------------------------------------------------------------------------------------


def with_cluster_sizes(spark: SparkSession, docs: DataFrame, settings: TokenizeSettings) -> DataFrame:
    """The documents with their --upsample-by column: the input's own, or dedup's cluster_size joined by
    id from ROOT/dedup/clusters (ROOT/final carries only the survivors' text and metadata)."""
    column = settings.upsample_by
    if column in docs.columns:
        return docs
    if column != "cluster_size":
        raise UserError(f"tokenize: {settings.source} has no column {column} for --upsample-by")
    clusters = output_datasets(settings.output)["clusters"]
    sizes = read_dataset(spark, clusters, settings.s3, ["id", "cluster_size"], produced_by="dedup")
    return docs.join(sizes, "id", "left")


def document_copies(docs: DataFrame, table: UpsampleTable | None, column: str | None) -> DataFrame:
    """(id, text, copy): every document once as copy 0, or as many times as the table gives."""
    if table is None:
        return docs.select("id", "text", F.lit(0).cast("int").alias("copy"))

    def compute(batches):
        for batch in batches:
            yield repeat_documents(batch, table, column)

    schema = pa.schema([("id", pa.string()), ("text", pa.string()), COPY_FIELD])
    return docs.select("id", "text", column).mapInArrow(compute, from_arrow_schema(schema))


# ---- 1-2. shuffle and encode --------------------------------------------------------------------------


def shuffle_key(seed: int) -> Column:
    """xxhash64(seed, id) for a document itself (the key without upsampling, so those shards keep their
    bytes), xxhash64(seed, id, k) for its k-th copy, so that copies are shuffled apart like documents."""
    document = F.xxhash64(F.lit(seed), F.col("id"))
    return F.when(F.col("copy") == 0, document).otherwise(F.xxhash64(F.lit(seed), F.col("id"), F.col("copy")))


def encode(
    copies: DataFrame, spec: EncodingSpec, shard_format: ShardFormat, seed: int, encoded: Accumulator
) -> DataFrame:
    """(id, order, n, tokens, copy, repeat) for every copy of every document, range-partitioned and sorted
    by (order, id, copy); `repeat` marks a row whose (id, copy) equals the row before: an id the input
    holds twice.

    The sort comes first, on the text, so that Spark's sampling for the range bounds never runs the
    encoder; encoding is a narrow step after it and keeps each partition's order."""
    keyed = copies.select("id", shuffle_key(seed).alias("order"), "text", "copy")
    partitions = max(copies.sparkSession.sparkContext.defaultParallelism, copies.rdd.getNumPartitions())
    ordered = keyed.repartitionByRange(partitions, "order", "id").sortWithinPartitions("order", "id", "copy")

    def compute(batches):
        copy_numbers: list[pa.Array] = []  # each batch's, taken before the encoder, which drops them

        def remember(batches):
            for batch in batches:
                copy_numbers.append(batch.column("copy"))
                yield batch

        previous = None  # a repeated (id, copy) has the same key, so it is the row after its twin
        for batch in encode_batches(remember(batches), spec, shard_format.dtype):
            copy = copy_numbers.pop(0)
            keys = list(zip(batch.column("id").to_pylist(), copy.to_pylist(), strict=True))
            repeats = [key == before for key, before in zip(keys, [previous, *keys[:-1]], strict=True)]
            previous = keys[-1] if keys else previous
            encoded.add(len(keys))
            yield batch.append_column(COPY_FIELD, copy).append_column("repeat", pa.array(repeats, pa.bool_()))

    schema = TOKENS_SCHEMA.append(COPY_FIELD).append(pa.field("repeat", pa.bool_()))
    return ordered.mapInArrow(compute, from_arrow_schema(schema))


# ---- 3. layout ----------------------------------------------------------------------------------------


Step = Callable[[Iterator[pa.RecordBatch], int], Iterator[pa.RecordBatch]]


def _per_partition(frame: DataFrame, bases: dict[int, int], step: Step, schema: pa.Schema) -> DataFrame:
    """mapInArrow of step(batches, base) over each partition of `frame`, in order, where `base` is the
    stream position of the partition's first token."""
    columns = list(frame.columns)

    def compute(batches):
        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            return
        base = bases[first.column("part")[0].as_py()]

        def without_part():
            yield first.select(columns)
            for batch in batches:
                yield batch.select(columns)

        yield from step(without_part(), base)

    return frame.withColumn("part", F.spark_partition_id()).mapInArrow(compute, from_arrow_schema(schema))


def document_ends(ordered: DataFrame, bases: dict[int, int]) -> DataFrame:
    """(start, end) of every document in the stream; token counts only cross into Python."""
    schema = pa.schema([("n", pa.int64()), ("start", pa.int64())])
    return _per_partition(ordered.select("n"), bases, running_starts, schema).select(
        "start", (F.col("start") + F.col("n")).alias("end")
    )


def layout_pieces(ordered: DataFrame, bases: dict[int, int], layout: Layout, itemsize: int) -> DataFrame:
    def step(batches, base):
        for batch in running_starts(batches, base):
            yield pieces(batch, layout, itemsize)

    return _per_partition(ordered, bases, step, PIECE_SCHEMA)


# ---- 4. write -----------------------------------------------------------------------------------------

SHARD_ENTRY_DDL = "entry string"


def write_shards(
    piece_frame: DataFrame, num_shards: int, directory: str, shard_format: ShardFormat, s3: S3Options
) -> list[dict[str, Any]]:
    """One task per shard (range partitioning on the shard number never splits a shard)."""

    def compute(batches):
        writer: ShardWriter | None = None
        try:
            for batch in batches:
                shards = batch.column("shard").to_numpy()
                for shard in np.unique(shards):  # sorted: the partition is ordered by (shard, offset)
                    if writer is not None and writer.index != shard:
                        yield _entry_batch(writer.commit())
                        writer = None
                    if writer is None:
                        writer = ShardWriter(directory, int(shard), shard_format, s3)
                    writer.add(batch.filter(pa.array(shards == shard)))
            if writer is not None:
                yield _entry_batch(writer.commit())
        except BaseException:
            if writer is not None:
                writer.abort()  # its local temporary files; nothing under a final name was written
            raise

    # piece_frame is checkpointed: the sampling for the range bounds reads it instead of recomputing it
    ordered = piece_frame.repartitionByRange(num_shards, "shard").sortWithinPartitions("shard", "offset")
    entries = [json.loads(row["entry"]) for row in ordered.mapInArrow(compute, SHARD_ENTRY_DDL).collect()]
    return sorted(entries, key=lambda entry: entry["index"])


def _entry_batch(entry: dict[str, Any]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"entry": [json.dumps(entry)]})


# ---- the job ------------------------------------------------------------------------------------------


def _fingerprint(settings: TokenizeSettings, spec: EncodingSpec, table: UpsampleTable | None) -> str:
    """Without --upsample-by the same parts as before it existed, so completed runs stay current."""
    rehydration = {}
    if table is not None:
        clusters = output_datasets(settings.output)["clusters"]
        rehydration["upsample"] = {
            "by": settings.upsample_by,
            "table": table.describe(),
            "clusters": content_fingerprint(clusters, settings.s3),
        }
    return fingerprint(
        input=content_fingerprint(settings.source, settings.s3),
        tokenizer=spec.rank_file_sha256,
        pattern=spec.pattern,
        special_tokens=spec.special_tokens,
        shard_tokens=settings.shard_tokens,
        val_tokens=settings.val_tokens,
        seed=settings.seed,
        **rehydration,
    )


def run_tokenize(spark: SparkSession, settings: TokenizeSettings) -> dict[str, Any]:
    """Shards and manifest under ROOT/tokens/<tokenizer>/; skipped when the manifest is current."""
    spec = check_tokenize(settings)
    table = upsample_table(settings)
    directory = tokens_directory(settings, spec)
    completion = Completion(join(directory, "manifest.json"), settings.s3)
    print_ = _fingerprint(settings, spec, table)
    if (manifest := completion.current(print_)) is not None:
        print(f"tokenize: {directory} is already complete for these inputs and settings; nothing to do")
        return manifest["counts"]
    with StageProgress(spark, "tokenize") as progress:
        return tokenize(spark, settings, spec, table, directory, completion, print_, progress.documents)


def tokenize(
    spark: SparkSession,
    settings: TokenizeSettings,
    spec: EncodingSpec,
    table: UpsampleTable | None,
    directory: str,
    completion: Completion,
    print_: str,
    encoded: Accumulator,
) -> dict[str, Any]:
    timings = Timings()
    s3, root, source = settings.s3, settings.output, settings.source
    vocab_size = encoding_for(spec).n_vocab
    shard_format = format_for_vocab(vocab_size)
    docs = read_dataset(spark, source, s3)
    if missing := {"id", "text"} - set(docs.columns):
        raise UserError(f"tokenize: {source} lacks the columns {sorted(missing)}")
    if table is not None:
        docs = with_cluster_sizes(spark, docs, settings)

    completion.begin()  # from here until the new manifest is written, the directory is not complete
    with timings.phase("encode_and_shuffle"):
        rows = docs.count()
        kept = docs.where(F.col("text").isNotNull() & (F.col("text") != ""))
        copies = document_copies(kept, table, settings.upsample_by)
        ordered = encode(copies, spec, shard_format, settings.seed, encoded).localCheckpoint()
        totals = (
            ordered.groupBy(F.spark_partition_id().alias("part"))
            .agg(
                F.sum("n").alias("tokens"),
                F.count("*").alias("documents"),
                F.count_if(F.col("copy") == 0).alias("originals"),
                F.sum(F.when(F.col("copy") > 0, F.col("n")).otherwise(0)).alias("tokens_added"),
                F.count_if("repeat").alias("repeats"),
            )
            .collect()
        )
        if repeats := sum(row["repeats"] for row in totals):
            raise UserError(f"tokenize: {source} has {repeats} rows whose id is not unique; ids must be")
        ordered = ordered.drop("copy", "repeat")
        documents = sum(row["documents"] for row in totals)  # copies included: the stream's documents
        originals = sum(row["originals"] for row in totals)
        if table is not None:
            size = F.col(settings.upsample_by)
            rehydrated = {
                "documents": originals,
                "copies": documents,
                "tokens_added": sum(int(row["tokens_added"]) for row in totals),
                "unknown_cluster_size": kept.where(size.isNull() | (size < 1)).count(),
            }

    with timings.phase("layout"):
        per_part = dict(sorted((row["part"], int(row["tokens"])) for row in totals))
        bases, position = {}, 0
        for part in range(ordered.rdd.getNumPartitions()):
            bases[part] = position
            position += per_part.get(part, 0)
        total_tokens = position
        asked = settings.val_tokens
        if asked is None:
            asked = min(DEFAULT_VAL_TOKENS, int(total_tokens * DEFAULT_VAL_FRACTION))
        ends = document_ends(ordered, bases).where(F.col("start") < asked)
        val_end = int(ends.agg(F.max("end")).first()[0] or 0)
        layout = Layout(
            val_tokens=val_end, train_tokens=total_tokens - val_end, shard_tokens=settings.shard_tokens
        )

    with timings.phase("write"):
        num_shards = 1 + layout.train_shards
        remove_stale_temps(directory, "")
        frame = layout_pieces(ordered, bases, layout, shard_format.dtype.itemsize).localCheckpoint()
        entries = write_shards(frame, num_shards, directory, shard_format, s3)
        if not entries or entries[0]["index"] != 0:  # no validation document: shard 0 is written empty
            entries.insert(0, _empty_validation(directory, shard_format, s3))

    sizes = [entry["tokens"] for entry in entries]
    if sizes != layout.shard_sizes() or [entry["index"] for entry in entries] != list(range(num_shards)):
        raise RuntimeError(f"tokenize: wrote shards of {sizes} tokens, expected {layout.shard_sizes()}")
    val_documents = entries[0]["documents"]
    manifest = {
        "format": FORMAT,
        "tokenizer": spec.describe(),
        "vocab_size": vocab_size,
        "dtype": dtype_name(shard_format),
        "magic": shard_format.magic,
        "version": shard_format.version,
        "eot_id": spec.eot_id,
        "counts": {
            "documents_in": rows,
            "documents": documents,
            "skipped": {"empty_text": rows - originals},
            "tokens": total_tokens,
            "val_documents": val_documents,
            "val_tokens": layout.val_tokens,
            "train_documents": documents - val_documents,
            "train_tokens": layout.train_tokens,
        },
        "shards": entries,
        "settings": {
            "seed": settings.seed,
            "shard_tokens": settings.shard_tokens,
            "val_tokens": asked,
            "input": source,
        },
        "recipe": latest_ingest_recipe(root, s3),
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if table is not None:
        manifest["counts"]["upsample"] = rehydrated
        manifest["settings"]["upsample"] = {"by": settings.upsample_by, "table": table.describe()}
    _remove_other_shards(
        directory, {entry[kind] for entry in entries for kind in ("bin", "idx", "parquet")}, s3
    )
    completion.commit(print_, manifest)
    stats = {
        "counts": manifest["counts"],
        "seconds": {**timings.seconds, "total": timings.total()},
        "dtype": manifest["dtype"],
        "vocab_size": vocab_size,
    }
    write_stats(root, "tokenize", stats, s3)
    print(format_table(manifest, directory))
    return manifest["counts"]


def _empty_validation(directory: str, shard_format: ShardFormat, s3: S3Options) -> dict[str, Any]:
    return ShardWriter(directory, 0, shard_format, s3).commit()


SHARD_FILE = re.compile(r"(val_000000|train_\d{6})\.(bin|idx|parquet)")


def _remove_other_shards(directory: str, keep: set[str], s3: S3Options) -> None:
    """Shards an earlier run with other settings left behind would be mistaken for this run's; only
    files named as tokenize names shards are candidates, so nothing else in the directory is touched."""
    prefix = directory_prefix(directory)
    for uri in list_files(prefix, s3):
        name = uri[len(prefix) :]
        if SHARD_FILE.fullmatch(name) and name not in keep:
            delete(uri, s3)


def format_table(manifest: dict[str, Any], directory: str) -> str:
    counts = manifest["counts"]
    rows = [
        ("documents in", counts["documents_in"]),
        ("skipped (empty text)", counts["skipped"]["empty_text"]),
        ("tokens", counts["tokens"]),
        ("validation tokens (shard 0)", counts["val_tokens"]),
        ("training tokens", counts["train_tokens"]),
        ("training shards", len(manifest["shards"]) - 1),
    ]
    if "upsample" in counts:
        rows[2:2] = [
            ("copies added (upsampling)", counts["upsample"]["copies"] - counts["upsample"]["documents"]),
            ("tokens added (upsampling)", counts["upsample"]["tokens_added"]),
        ]
    lines = [f"{label:<32}{value:>14,}" for label, value in rows]
    tokenizer = manifest["tokenizer"]["name"]
    lines.append(f"{'tokenizer':<32}{tokenizer:>14} ({manifest['dtype']}, EOT {manifest['eot_id']})")
    lines.append(f"output: {directory}")
    return "\n".join(lines)
