"""Tokenize: final documents -> shuffled token shards for trainers, in llm.c's format.

    tokenmill tokenize -o ROOT --encoding NAME|PATH [--input DATASET] [--shard-tokens N]
                       [--val-tokens N] [--seed S] [--upsample-by COLUMN [--upsample-table FILE]]
                       [--master URL]
    spark-submit jobs/tokens.py -o ROOT --encoding gpt2 ...

Input: ROOT/final from `tokenmill dedup`, or any Parquet with `id` and `text` (--input). Output:
ROOT/tokens/<tokenizer>/ with val_000000.* (shard 0, validation) and train_000001.*, ... each as
`.bin` (llm.c format: uint16, or uint32 with its own magic when the vocabulary needs it), `.idx`
(uint64 document starts) and `.parquet` (id, tokens, offset, piece), and manifest.json, written last.

1. encode: Python tasks read the input's Parquet files through the storage layer (no Spark SQL in
   between), drop empty texts, repeat documents by their duplicate cluster's size with --upsample-by
   (tokenizer.upsample, FineWeb-2's table by default; copies numbered 0, 1, ...), key each by
   xxhash64(seed, id) (a copy k > 0 by xxhash64(seed, id, k), as Spark computes it: tokenizer.order),
   and encode EOT + encode_ordinary(text) in the shard dtype.
2. shuffle: each map task spills its packed documents to one scratch file beside the shards, and only
   (bucket, byte range) references move by bucket (the top bits of the key) through one Spark shuffle;
   each reduce task reads its ranges, sorts its bucket by (key, id, copy) and writes it as a run file
   in the same temporary directory (tokenizer.runs). The order depends on the seed and the ids only, never
   on the partitioning: the same seed gives byte-identical shards, and the copies of a document land
   apart.
3. layout: the runs' token totals give each document its start in the stream (tokenizer.layout).
4. write: one task per shard reads its token range from the runs, writes and commits its three files;
   the runs are deleted and the driver writes the manifest.
manifest.json is the completion marker (`pipeline.completion`): it holds the fingerprint of the input's
content and the settings, so a rerun with the same inputs and settings is skipped, any change reruns,
and after a crash a rerun rewrites the same bytes.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import RDD, Accumulator, TaskContext
from pyspark.sql import SparkSession

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
    list_infos,
    local_path,
    remove_stale_temps,
    stat,
    write_with,
)
from tokenmill.pipeline.storage.parquet import committed_files, iter_batches, read_schema
from tokenmill.pipeline.storage.roots import check_writable_root
from tokenmill.tokenizer.documents import DocumentEncoder, InputCounts, Shuffled
from tokenmill.tokenizer.encodings import ENDOFTEXT, EncodingSpec, encoding_for, load_spec
from tokenmill.tokenizer.layout import Layout, pieces
from tokenmill.tokenizer.runs import (
    RUNS_DIRECTORY,
    SCRATCH_FILE,
    SPILL_FILE,
    Run,
    RunSummary,
    Spilled,
    read_range,
    read_spilled,
    run_counts,
    run_uri,
    spill_uri,
    write_packed,
    write_run,
)
from tokenmill.tokenizer.shards import ShardFormat, dtype_name, format_for_vocab
from tokenmill.tokenizer.upsample import FINEWEB2, UpsampleTable, load_table
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


# ---- 1. encode: Python tasks read the Parquet files themselves ------------------------------------------


BUCKET_INPUT_BYTES = 256 << 20  # of Parquet per bucket: a reduce task holds its bucket's tokens in memory


def _buckets_for_size(source: str, files: list[str], s3: S3Options) -> int:
    """Enough buckets that each gets about BUCKET_INPUT_BYTES of the input's Parquet, whatever the
    number of files (one listing, not a request per file)."""
    wanted = set(files)
    listed = list_infos(directory_prefix(local_path(source) or source), s3) if len(files) > 1 else []
    sizes = [info.size for info in listed if info.uri in wanted] or [stat(uri, s3).size for uri in files]
    return -(-sum(sizes) // BUCKET_INPUT_BYTES)


def encoded_documents(
    spark: SparkSession,
    settings: TokenizeSettings,
    make_encoder: Callable[[int], DocumentEncoder],
    encoded: Accumulator,
) -> tuple[RDD[Shuffled], int]:
    """(bucket, Packed | InputCounts) pairs of the whole input, before the shuffle, and the number of
    buckets (reduce tasks): one per input file, at least one per core and per BUCKET_INPUT_BYTES.

    Map tasks read the dataset's committed Parquet files through the storage layer, one task per file,
    with no Spark SQL in between. Only --upsample-by cluster_size on an input without that column joins
    dedup's cluster sizes in Spark first, and encodes the joined rows as they come out of the join."""
    source, s3 = settings.source, settings.s3
    files = committed_files(source, s3)
    if not files:
        raise UserError(f"no Parquet files under {source}; run `tokenmill dedup` first or check the path")
    file_schema = read_schema(files[0], s3)
    if missing := {"id", "text"} - set(file_schema.names):
        raise UserError(f"tokenize: {source} lacks the columns {sorted(missing)}")
    buckets_count = max(
        spark.sparkContext.defaultParallelism, len(files), _buckets_for_size(source, files, s3)
    )
    encoder = make_encoder(buckets_count)
    column = settings.upsample_by
    if column is None or column in file_schema.names:
        wanted = ["id", "text"] + ([column] if column else [])

        def encode_files(uris: Iterator[str]) -> Iterator[Shuffled]:
            batches = (batch for uri in uris for batch in iter_batches(uri, s3, wanted, schema=file_schema))
            yield from encoder(batches, encoded)

        return spark.sparkContext.parallelize(files, len(files)).mapPartitions(encode_files), buckets_count
    if column != "cluster_size":
        raise UserError(f"tokenize: {source} has no column {column} for --upsample-by")
    docs = read_dataset(spark, source, s3, ["id", "text"])
    clusters = output_datasets(settings.output)["clusters"]
    sizes = read_dataset(spark, clusters, s3, ["id", "cluster_size"], produced_by="dedup")

    def encode_joined(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for bucket, value in encoder(batches, encoded):
            yield pa.record_batch(
                [pa.array([bucket], pa.int32()), pa.array([pickle.dumps(value)], pa.binary())],
                names=["bucket", "value"],
            )

    joined = docs.join(sizes, "id", "left").mapInArrow(encode_joined, "bucket int, value binary")
    return joined.rdd.map(lambda row: (row.bucket, pickle.loads(row.value))), buckets_count


# ---- 2. shuffle: one sorted run per bucket ---------------------------------------------------------------


def sorted_runs(
    pairs: RDD[Shuffled], buckets_count: int, directory: str, dtype: np.dtype, s3: S3Options
) -> list[tuple[int, RunSummary | None, InputCounts]]:
    """Each map task spills its packed documents to one scratch file and only (bucket, file range)
    references cross Spark's shuffle; each reduce task reads its bucket's ranges, sorts them and writes
    its run. (bucket, summary or None when empty, input counts)."""

    def spill(partition: int, values: Iterator[Shuffled]) -> Iterator[tuple[int, Spilled | InputCounts]]:
        uri = spill_uri(directory, partition, TaskContext.get().taskAttemptId())
        sent: list[tuple[int, Spilled | InputCounts]] = []

        def write(handle: BinaryIO) -> None:
            offset = 0
            for bucket, value in values:
                if isinstance(value, InputCounts):
                    sent.append((bucket, value))
                else:
                    length = write_packed(handle, value)
                    sent.append((bucket, Spilled(uri, offset, length)))
                    offset += length

        write_with(uri, write, s3, durable=False)  # scratch: a crashed job removes it and recomputes
        return iter(sent)

    def sort_bucket(bucket: int, values: Iterable[tuple[int, Spilled | InputCounts]]) -> Iterator[tuple]:
        refs, rows, unknown = [], 0, 0
        for _, value in values:
            if isinstance(value, InputCounts):
                rows, unknown = rows + value.rows, unknown + value.unknown_cluster_size
            else:
                refs.append(value)
        uri = run_uri(directory, bucket)
        summary = write_run(read_spilled(refs, s3, dtype), uri, s3) if refs else None
        yield bucket, summary, InputCounts(rows, unknown)

    spilled = pairs.mapPartitionsWithIndex(spill).partitionBy(
        buckets_count, partitionFunc=lambda bucket: bucket
    )
    return sorted(spilled.mapPartitionsWithIndex(sort_bucket).collect(), key=lambda found: found[0])


def remove_runs(directory: str, s3: S3Options, names: re.Pattern[str] = SCRATCH_FILE) -> None:
    """Delete the scratch files of this or an earlier, crashed run: only names tokenize gives them."""
    runs = join(directory, RUNS_DIRECTORY)
    prefix = directory_prefix(runs)
    for uri in list_files(prefix, s3):
        if names.fullmatch(uri[len(prefix) :]):
            delete(uri, s3)
    if (path := local_path(runs)) is not None and os.path.isdir(path) and not os.listdir(path):
        os.rmdir(path)


# ---- 3. layout ----------------------------------------------------------------------------------------


def validation_end(runs: list[Run], total_tokens: int, asked: int, s3: S3Options) -> int:
    """The end of the last document that starts before `asked`: the document holding position
    min(asked, total) - 1, found in the one run that holds it."""
    position = min(asked, total_tokens) - 1
    if position < 0:
        return 0
    run = next(run for run in runs if run.base <= position < run.base + run.tokens)
    ends = run.base + np.cumsum(run_counts(run.uri, s3))
    return int(ends[np.searchsorted(ends, position, side="right")])


# ---- 4. write -----------------------------------------------------------------------------------------


def write_shards(
    spark: SparkSession,
    runs: list[Run],
    layout: Layout,
    directory: str,
    shard_format: ShardFormat,
    s3: S3Options,
) -> list[dict[str, Any]]:
    """One task per shard reads the documents of its token range from the runs that hold them, cuts
    them into pieces (tokenizer.layout) and commits the shard; shard 0 may be empty."""
    bounds = np.cumsum([0, *layout.shard_sizes()]).tolist()
    itemsize = shard_format.dtype.itemsize

    def write(indices: Iterator[int]) -> Iterator[dict[str, Any]]:
        for index in indices:
            low, high = bounds[index], bounds[index + 1]
            writer = ShardWriter(directory, index, shard_format, s3)
            try:
                for run in runs:
                    if run.base >= high or run.base + run.tokens <= low:
                        continue
                    for batch in read_range(run.uri, s3, run.base, low, high, itemsize):
                        found = pieces(batch, layout, itemsize)
                        mine = found.filter(pc.equal(found.column("shard"), index))
                        if mine.num_rows:
                            writer.add(mine)
                yield writer.commit()
            except BaseException:
                writer.abort()  # its local temporary files; nothing under a final name was written
                raise

    shards = len(bounds) - 1
    entries = spark.sparkContext.parallelize(range(shards), shards).mapPartitions(write).collect()
    return sorted(entries, key=lambda entry: entry["index"])


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
    s3, root = settings.s3, settings.output
    vocab_size = encoding_for(spec).n_vocab
    shard_format = format_for_vocab(vocab_size)
    threads = int(spark.conf.get("spark.task.cpus", "1"))

    def make_encoder(buckets_count: int) -> DocumentEncoder:
        return DocumentEncoder(
            spec, shard_format.dtype, settings.seed, buckets_count, threads, table, settings.upsample_by
        )

    pairs, buckets_count = encoded_documents(spark, settings, make_encoder, encoded)  # checks the input
    completion.begin()  # from here until the new manifest is written, the directory is not complete
    remove_runs(directory, s3)
    try:
        with timings.phase("encode_and_shuffle"):
            found = sorted_runs(pairs, buckets_count, directory, shard_format.dtype, s3)
            remove_runs(directory, s3, SPILL_FILE)  # the runs hold every document now
        summaries = [summary for _, summary, _ in found if summary is not None]
        if repeats := sum(summary.repeats for summary in summaries):
            raise UserError(
                f"tokenize: {settings.source} has {repeats} rows whose id is not unique; ids must be"
            )
        rows = sum(counts.rows for _, _, counts in found)
        documents = sum(summary.documents for summary in summaries)  # copies included
        originals = sum(summary.originals for summary in summaries)
        if table is not None:
            rehydrated = {
                "documents": originals,
                "copies": documents,
                "tokens_added": sum(summary.tokens_added for summary in summaries),
                "unknown_cluster_size": sum(counts.unknown_cluster_size for _, _, counts in found),
            }

        with timings.phase("layout"):
            runs, position = [], 0
            for bucket, summary, _ in found:
                if summary is not None:
                    runs.append(Run(run_uri(directory, bucket), position, summary.tokens))
                    position += summary.tokens
            total_tokens = position
            asked = settings.val_tokens
            if asked is None:
                asked = min(DEFAULT_VAL_TOKENS, int(total_tokens * DEFAULT_VAL_FRACTION))
            val_end = validation_end(runs, total_tokens, asked, s3)
            layout = Layout(
                val_tokens=val_end, train_tokens=total_tokens - val_end, shard_tokens=settings.shard_tokens
            )

        with timings.phase("write"):
            remove_stale_temps(directory, "")
            entries = write_shards(spark, runs, layout, directory, shard_format, s3)
    finally:
        remove_runs(directory, s3)

    num_shards = 1 + layout.train_shards
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
            "input": settings.source,
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
