"""Benchmark: tokenmill's tokenize job against raw tiktoken, and BPE training against rustbpe and
HF tokenizers, in one run.

    python bench/tokenize.py [all|encode|train] [--src DIR] [--work DIR] [--copies K] [--vocab-size N]

Corpus (~20 MB of real text): bench/dedup.py's documents (trafilatura-extracted pages of SRC/extraction,
wikitext-2 sections, dolma's Common Crawl documents, a wiki reference), tiny shakespeare's speeches,
minbpe's Taylor Swift article and the 147 Common Crawl llms.txt files of SRC/text.

1. encode: the corpus repeated K times (default 32, ~530 MB, so that fixed costs weigh about as little
   as at crawl scale; each copy its own ids) as 8 Parquet files. Anchor: tiktoken `encode_ordinary`
   (gpt2) over every text in this process, one core: every other document just before the job, the
   others just after it, so that the anchor spans the job's time (this machine's speed drifts by up
   to ~25% over minutes; both halves are printed).
   Measured: `tokenmill tokenize --encoding gpt2 --master local[2]` as a subprocess, end to end
   (JVM start, encode, global shuffle, layout, writing .bin/.idx/.parquet, manifest) and the job's own
   seconds after its Spark session is up. MB/s per core = text MB / seconds / cores. Target >= 0.8x.
   The job runs again on the corpus repeated 2K times (both runs between the anchor's halves): the
   difference of the two is the marginal rate, what each further MB costs once the job's fixed costs
   (the first task's start, the last shards' writing) are paid, as in a crawl-sized run.
2. train: byte-level BPE at vocab N (default 32,768) on the corpus, one machine, GPT-4 split pattern:
   tokenmill's `train_bpe` (chunks counted on all cores, merges in one process), rustbpe (Rust, all
   cores), HF tokenizers' BpeTrainer (Rust, all cores); then `tokenmill train-tokenizer --master
   local[2]` (counting in Spark) with its per-core counting speed. tokenmill's merges are checked
   equal to rustbpe's. Target: within 2x of HF.

Results: a table on stdout and WORK/tokenize_results.json, with `crawl_cost`: the encode part's
core-seconds for its documents, tokenmill's (job seconds x 2 cores) beside tiktoken's (one core,
encode only), for bench/crawl_cost.py's projection of one crawl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from dedup import DEFAULT_SRC, DEFAULT_WORK, load_corpus, progress

from tokenmill.tokenizer import bpe, load_encoding

TOKENMILL = Path(sys.executable).parent / "tokenmill"
ENCODE_TARGET, TRAIN_TARGET = 0.8, 2.0
MB = 1e6


def corpus_texts(src: Path, work: Path) -> list[str]:
    texts = [doc.text for doc in load_corpus(src, work)]
    shakespeare = (src / "text" / "tinyshakespeare_input.txt").read_text(encoding="utf-8")
    texts += [speech for speech in shakespeare.split("\n\n") if speech.strip()]
    texts.append((src / "text" / "minbpe_taylorswift.txt").read_text(encoding="utf-8"))
    llms = pq.read_table(src / "text" / "commoncrawl-llms-txt-experiments_train-00000-of-00001.parquet")
    texts += [text for text in llms.column("content").to_pylist() if text]
    return texts


def megabytes(texts: list[str]) -> float:
    return sum(len(text.encode("utf-8")) for text in texts) / MB


def run_cli(*args: str) -> float:
    started = time.perf_counter()
    env = {**os.environ, "TOKENMILL_SPARK_LOG_LEVEL": "ERROR"}
    subprocess.run([str(TOKENMILL), *args], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


# ---- 1. encode ------------------------------------------------------------------------------------------


def anchor_half(encoding: Any, rows: list[tuple[str, str]]) -> tuple[int, float, float]:
    """tiktoken's encode_ordinary over `rows` in this process: (tokens with EOTs, seconds, CPU seconds)."""
    started, cpu = time.perf_counter(), time.process_time()
    tokens = sum(len(encoding.encode_ordinary(text)) + 1 for _, text in rows)
    return tokens, time.perf_counter() - started, time.process_time() - cpu


def encode_corpus(texts: list[str], work: Path, copies: int) -> tuple[Path, list[tuple[str, str]]]:
    """The corpus repeated `copies` times as 8 Parquet files (built once) and its (id, text) rows."""
    corpus = work / f"encode-x{copies}"
    rows = [(f"c{copy}-{index}", text) for copy in range(copies) for index, text in enumerate(texts)]
    if not corpus.is_dir():
        corpus.mkdir(parents=True)
        for part in range(8):
            chunk = rows[part::8]
            table = pa.table({"id": [row[0] for row in chunk], "text": [row[1] for row in chunk]})
            pq.write_table(table, corpus / f"part-{part}.parquet")
    return corpus, rows


def run_tokenize(corpus: Path, work: Path, copies: int) -> tuple[float, dict[str, Any], dict[str, float]]:
    """`tokenmill tokenize --master local[2]` on `corpus`: (wall seconds, manifest, the job's seconds)."""
    root = work / f"encode-out-x{copies}"
    subprocess.run(["rm", "-rf", str(root)], check=True)
    wall = run_cli(
        "tokenize", "-o", str(root), "--encoding", "gpt2", "--input", str(corpus), "--master", "local[2]"
    )
    manifest = json.loads((root / "tokens" / "gpt2" / "manifest.json").read_text())
    return wall, manifest, json.loads((root / "stats" / "tokenize.json").read_text())["seconds"]


def bench_encode(texts: list[str], work: Path, copies: int) -> dict[str, Any]:
    corpus, rows = encode_corpus(texts, work, copies)
    twice, _ = encode_corpus(texts, work, 2 * copies)
    size = megabytes(texts) * copies
    progress(f"encode: {len(rows):,} documents, {size:,.0f} MB (and twice that for the marginal rate)")

    encoding = load_encoding("gpt2")
    halves = rows[::2], rows[1::2]
    tokens, anchor_s, first_cpu = anchor_half(encoding, halves[0])
    progress(f"tiktoken encode_ordinary, every other document: {first_cpu:.1f} CPU s")
    wall, manifest, job = run_tokenize(corpus, work, copies)
    progress(f"tokenmill tokenize x{copies}: {job['total']:.1f} s")
    _, _, twice_job = run_tokenize(twice, work, 2 * copies)
    progress(f"tokenmill tokenize x{2 * copies}: {twice_job['total']:.1f} s")
    more_tokens, more_s, second_cpu = anchor_half(encoding, halves[1])
    progress(f"tiktoken encode_ordinary, the others: {second_cpu:.1f} CPU s")
    tokens, anchor_s, anchor_cpu = tokens + more_tokens, anchor_s + more_s, first_cpu + second_cpu
    assert manifest["counts"]["tokens"] == tokens, "the job's token count differs from tiktoken's"
    anchor_rate = size / anchor_cpu
    wall_rate = size / wall / 2
    job_seconds = job["total"]
    job_rate = size / job_seconds / 2
    marginal_seconds = twice_job["total"] - job_seconds
    marginal_rate = size / marginal_seconds / 2
    return {
        "documents": len(rows),
        "megabytes": round(size, 1),
        "tokens": tokens,
        "tiktoken_seconds": round(anchor_s, 2),
        "tiktoken_cpu_seconds": round(anchor_cpu, 2),
        "tiktoken_cpu_seconds_before_and_after": [round(first_cpu, 2), round(second_cpu, 2)],
        "tiktoken_mb_per_s_core": round(anchor_rate, 2),
        "tokenmill_wall_seconds": round(wall, 2),
        "tokenmill_job_seconds": round(job_seconds, 2),
        "tokenmill_stage_seconds": job,
        "tokenmill_mb_per_s_core_end_to_end": round(wall_rate, 2),
        "tokenmill_mb_per_s_core_job": round(job_rate, 2),
        "tokenmill_twice_job_seconds": round(twice_job["total"], 2),
        "tokenmill_twice_stage_seconds": twice_job,
        "tokenmill_mb_per_s_core_marginal": round(marginal_rate, 2),
        "ratio_end_to_end": round(wall_rate / anchor_rate, 3),
        "ratio_job": round(job_rate / anchor_rate, 3),
        "ratio_marginal": round(marginal_rate / anchor_rate, 3),
        "target": ENCODE_TARGET,
    }


def crawl_cost(encode: dict[str, Any]) -> list[dict[str, Any]]:
    """The encode part's core-seconds for its documents: tokenmill's job on 2 cores, tiktoken's 1 core."""
    return [
        {
            "stage": "tokenize",
            "system": "tokenmill",
            "records": encode["documents"],
            "core_seconds": round(encode["tokenmill_job_seconds"] * 2, 2),
        },
        {
            "stage": "tokenize",
            "system": "tiktoken (one core, encode only)",
            "records": encode["documents"],
            "core_seconds": encode["tiktoken_cpu_seconds"],
        },
    ]


# ---- 2. train -------------------------------------------------------------------------------------------


def train_hf(texts: list[str], vocab_size: int) -> float:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(bpe.GPT4_PATTERN), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[bpe.ENDOFTEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    started = time.perf_counter()
    tokenizer.train_from_iterator(texts, trainer)
    return time.perf_counter() - started


def bench_train(texts: list[str], work: Path, vocab_size: int) -> dict[str, Any]:
    import rustbpe

    size = megabytes(texts)
    progress(f"train: {len(texts):,} texts, {size:.1f} MB, vocab {vocab_size:,}")
    started = time.perf_counter()
    counts = bpe.count_chunks(texts, processes=os.cpu_count() or 1)  # what train_bpe does
    count_seconds = time.perf_counter() - started
    merges = bpe.train_merges(counts, bpe.num_merges_for(vocab_size))
    ours = time.perf_counter() - started
    progress(
        f"tokenmill train_bpe: {ours:.1f} s (count {count_seconds:.1f} s, merge {ours - count_seconds:.1f} s)"
    )

    reference = rustbpe.Tokenizer()
    started = time.perf_counter()
    reference.train_from_iterator(iter(texts), vocab_size - 1, pattern=bpe.GPT4_PATTERN)
    rust = time.perf_counter() - started
    reference_ranks = dict(reference.get_mergeable_ranks())
    same = bpe.merges_to_ranks(merges) == reference_ranks
    progress(f"rustbpe: {rust:.1f} s; merges identical: {same}")
    hf = train_hf(texts, vocab_size)
    progress(f"HF tokenizers: {hf:.1f} s")

    corpus = work / "train-corpus"
    if not corpus.is_dir():
        corpus.mkdir(parents=True)
        for part in range(4):
            pq.write_table(pa.table({"text": texts[part::4]}), corpus / f"part-{part}.parquet")
    root = work / "train-out"
    subprocess.run(["rm", "-rf", str(root)], check=True)
    args = ("-o", str(root), "--vocab-size", str(vocab_size), "--input", str(corpus), "--master", "local[2]")
    spark_wall = run_cli("train-tokenizer", *args)
    directory = root / "tokenizer" / f"bpe-{vocab_size}"
    spark_seconds = json.loads((directory / "tokenizer.json").read_text())["training"]["seconds"]
    spark_same = load_encoding(str(directory))._mergeable_ranks == reference_ranks
    progress(f"tokenmill train-tokenizer local[2]: {spark_wall:.1f} s; merges identical: {spark_same}")
    return {
        "megabytes": round(size, 1),
        "vocab_size": vocab_size,
        "distinct_chunks": len(counts),
        "tokenmill_seconds": round(ours, 2),
        "tokenmill_count_seconds": round(count_seconds, 2),
        "tokenmill_merge_seconds": round(ours - count_seconds, 2),
        "rustbpe_seconds": round(rust, 2),
        "hf_tokenizers_seconds": round(hf, 2),
        "ratio_vs_hf": round(ours / hf, 2),
        "ratio_vs_rustbpe": round(ours / rust, 2),
        "merges_equal_rustbpe": same,
        "spark_wall_seconds": round(spark_wall, 2),
        "spark_seconds": spark_seconds,
        "spark_count_mb_per_s_core": round(size / spark_seconds["count"] / 2, 2),
        "spark_merges_equal_rustbpe": spark_same,
        "target_vs_hf": TRAIN_TARGET,
    }


def report(results: dict[str, Any]) -> None:
    if "encode" in results:
        r = results["encode"]
        print(f"\nencode: {r['documents']:,} documents, {r['megabytes']:,} MB, {r['tokens']:,} gpt2 tokens")
        rows = [
            ("tiktoken encode_ordinary, 1 core", r["tiktoken_mb_per_s_core"], ""),
            (
                "tokenmill tokenize local[2], end to end",
                r["tokenmill_mb_per_s_core_end_to_end"],
                f"{r['tokenmill_wall_seconds']:.1f} s wall incl. JVM and session start",
            ),
            (
                "tokenmill tokenize local[2], session up",
                r["tokenmill_mb_per_s_core_job"],
                f"{r['tokenmill_job_seconds']:.1f} s; target {r['target']}x",
            ),
            (
                "tokenmill tokenize local[2], marginal",
                r["tokenmill_mb_per_s_core_marginal"],
                f"twice the corpus took {r['tokenmill_twice_job_seconds']:.1f} s: the cost per MB "
                "once the job's fixed costs are paid",
            ),
        ]
        anchor = r["tiktoken_mb_per_s_core"]
        for label, rate, note in rows:
            print(f"  {label:<44}{rate:>7.2f} MB/s/core  {rate / anchor:.2f}x  {note}")
    if "train" in results:
        r = results["train"]
        chunks = r["distinct_chunks"]
        print(f"\ntrain: {r['megabytes']} MB, vocab {r['vocab_size']:,}, {chunks:,} distinct chunks")
        rows = [
            ("HF tokenizers BpeTrainer (all cores)", r["hf_tokenizers_seconds"]),
            ("rustbpe (all cores)", r["rustbpe_seconds"]),
            ("tokenmill train_bpe (count: all cores, merge: 1)", r["tokenmill_seconds"]),
            ("tokenmill train-tokenizer local[2], wall", r["spark_wall_seconds"]),
        ]
        for label, seconds in rows:
            print(f"  {label:<44}{seconds:>7.1f} s  {seconds / r['hf_tokenizers_seconds']:.2f}x HF's time")
        print(f"  tokenmill: count {r['tokenmill_count_seconds']} s + merge {r['tokenmill_merge_seconds']} s")
        print(f"  Spark counting: {r['spark_count_mb_per_s_core']} MB/s per core; {r['spark_seconds']}")
        print(f"  target: within {r['target_vs_hf']}x of HF tokenizers")
        same, spark_same = r["merges_equal_rustbpe"], r["spark_merges_equal_rustbpe"]
        print(f"  merges equal rustbpe's: in-process {same}, Spark {spark_same}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("part", nargs="?", default="all", choices=["all", "encode", "train"])
    parser.add_argument(
        "--src", type=Path, default=DEFAULT_SRC, help=f"benchmark data (default {DEFAULT_SRC})"
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--copies", type=int, default=32, help="corpus copies for the encode part (~530 MB)")
    parser.add_argument("--vocab-size", type=int, default=32_768)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    texts = corpus_texts(args.src, args.work)
    out = args.work / "tokenize_results.json"
    results = json.loads(out.read_text()) if out.is_file() else {}
    if args.part in ("all", "encode"):
        results["encode"] = bench_encode(texts, args.work, args.copies)
        results["crawl_cost"] = crawl_cost(results["encode"])
    if args.part in ("all", "train"):
        results["train"] = bench_train(texts, args.work, args.vocab_size)
    out.write_text(json.dumps(results, indent=1))
    report(results)


if __name__ == "__main__":
    main()
