"""Benchmark: tokenmill's MinHash dedup against datasketch and datatrove, in one run.

    python bench/dedup.py [all|signatures|quality|scale|speedups] [--src DIR] [--work DIR] [--docs N]
                          [--preset NAME] [--min-jaccards J,J...] [--sizes N,N...] [--table]

Corpus: real documents of at least 50 words, built once into WORK/corpus.jsonl.gz:
- extracted: every HTML page under SRC/extraction (trafilatura's eval set and mozilla/readability's test
  pages), decoded with tokenmill's charset rules and extracted by trafilatura with FineWeb's settings
  (favor precision, no comments; its cross-page deduplication off, so a text never depends on the
  pages before it);
- wikitext: SRC/text/wikitext-2_{valid,test}.txt cut at every section heading;
- dolma: the Common Crawl documents of SRC/text/dolma_cc_en_head-*.jsonl.gz and SRC/pii's dolma file;
- reference: tests/data/text/cs336_high_quality_wiki_reference.txt cut at blank lines.

1. signatures: one process, one thread, the same documents. tokenmill's `MinHasher.band_keys_batch`
   (fineweb preset: signature and band keys) in batches of 1,024; datasketch's `MinHash(num_perm=112,
   scheme="affine64")` with one `update` per word 5-gram of tokenmill's normalized text; datatrove
   0.10.1's `MinhashDedupSignature` (its FineWeb defaults: spaCy words of `simplify_text`, xxhash64
   5-grams, 14 x 8) through its own `get_shingles` and `get_signature`. Target: >= 5x datatrove.
2. quality: each document (>= 100 words) gets an edited copy (words replaced, inserted and deleted)
   whose exact Jaccard similarity to it is drawn uniformly from 0.3..1.0. Truth is exact: every pair
   of the corpus at Jaccard >= 0.5 (planted or naturally similar) from an inverted index of shingles.
   Reported: recall over pairs >= 0.8 and precision of merged pairs (every pair inside one component;
   correct when its Jaccard is >= 0.5). Targets at the fineweb preset, for the job's default: recall
   >= 0.95, precision >= 0.99. Scored the same way, in the same run:
   - the anchor: FineWeb's plain banding in this process (band keys, grouping by key, union-find);
   - `tokenmill dedup --master local[2]` with its default --min-jaccard (candidates merged only at an
     estimated Jaccard >= 0.6), and once per --min-jaccards (default 0: plain banding, which must give
     the anchor's clusters), from ROOT/dedup/clusters.
3. scale: per size (100k, 300k, 1M), a generated corpus in WORK/scale-N/corpus (16 Parquet files of
   id, text, url; sentences of the real corpus shuffled into documents of 200..600 words, 10% planted
   near-duplicates, 3% exact copies, fixed seed, cached) through `tokenmill dedup --master local[2]`
   (fineweb preset, default --min-jaccard) as a subprocess: wall time, peak RSS of its process tree
   (JVM, Python workers and driver, sampled from /proc every 0.5 s), the job's seconds per stage, recall
   of the planted copies from ROOT/dedup/clusters, and the growth exponent between sizes. Targets: 1M
   documents in <= 10 min on 2 cores, peak <= 8 GiB, growth exponent <= 1.0 between the two largest
   sizes (`make bench-scale`: 300k and 1M). The largest size's core-seconds (wall x 2 cores) go to the
   results' "crawl_cost", with datatrove's signature stage per document if the signatures part ran.

4. speedups: each change made for issue 14 timed against the way it was, on the same data in the same
   run, the best of --repeats alternating runs: a. the keys normalize each text once (was twice), b. the
   buckets' roots come from a window (was a grouping joined back to the members), c. survivors are the
   documents minus a broadcast of the removed ids (was a shuffle join of all documents with the kept
   ids), d. the IP patterns run only on texts that pass a cheap pre-check. a and d: CPU seconds in
   this process on the real corpus; b and c: Spark wall seconds on local[2] over the scale corpus of
   --speedup-size documents. Each checks that its output is unchanged.

Results: tables on stdout, merged into WORK/dedup_results.json (other keys and sizes are kept).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import random
import re
import resource
import shutil
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill.pipeline.dedup import pii
from tokenmill.pipeline.dedup.keys import dedup_keys, text_hash
from tokenmill.pipeline.dedup.minhash import PRESETS, MinHashConfig, MinHasher, normalize_for_dedup
from tokenmill.pipeline.dedup.pii import scrub
from tokenmill.pipeline.ingest.charset import decode_html

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO_ROOT / "bench" / "data"
DEFAULT_WORK = REPO_ROOT / "bench" / "work"
MIN_WORDS = 50
BATCH = 1024
SPEEDUP_TARGET = 5.0
RECALL_TARGET, PRECISION_TARGET = 0.95, 0.99
_STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.1f} s] {message}", flush=True)


# ---------------------------------------------------------------------------------------------------
# Corpus


@dataclass(frozen=True)
class Doc:
    source: str
    id: str
    text: str


def _extracted(src: Path) -> list[Doc]:
    import trafilatura

    docs = []
    for tarball, suffix in (
        ("trafilatura_eval.tar.xz", ".html"),
        ("readability_test_pages.tar.xz", "source.html"),
    ):
        with tarfile.open(src / "extraction" / tarball, "r:*") as tar:
            pages = {m.name: tar.extractfile(m).read() for m in tar if m.isfile() and m.name.endswith(suffix)}
        for name in sorted(pages):
            decoded = decode_html(pages[name], None)
            text = decoded and trafilatura.extract(
                decoded[0], favor_precision=True, include_comments=False, deduplicate=False
            )
            if text:
                docs.append(Doc("extracted", name, text))
    return docs


def _wikitext(src: Path) -> list[Doc]:
    docs = []
    for split in ("valid", "test"):
        text = (src / "text" / f"wikitext-2_{split}.txt").read_text()
        for index, section in enumerate(re.split(r"\n (?:= )+[^=\n]+(?: =)+ \n", text)):
            docs.append(Doc("wikitext", f"{split}-{index}", section.strip()))
    return docs


def _dolma(src: Path) -> list[Doc]:
    paths = sorted((src / "text").glob("dolma_cc_en_head-*.jsonl.gz")) + [
        src / "pii" / "dolma_provided_documents_000.json.gz"
    ]
    docs = []
    for path in paths:
        with gzip.open(path, "rt") as lines:
            rows = [json.loads(line) for line in lines]
        docs += [Doc("dolma", row["id"], row["text"]) for row in rows]
    return docs


def _reference() -> list[Doc]:
    text = (REPO_ROOT / "tests" / "data" / "text" / "cs336_high_quality_wiki_reference.txt").read_text()
    return [Doc("reference", str(index), part) for index, part in enumerate(text.split("\n\n"))]


def load_corpus(src: Path, work: Path) -> list[Doc]:
    """The real documents (see the module docstring), distinct texts of >= MIN_WORDS words, cached."""
    cache = work / "corpus.jsonl.gz"
    if not cache.is_file():
        progress("building the corpus (trafilatura on ~1,050 pages, once)")
        docs = _extracted(src) + _wikitext(src) + _dolma(src) + _reference()
        unique = {doc.text: doc for doc in docs if len(doc.text.split()) >= MIN_WORDS}
        work.mkdir(parents=True, exist_ok=True)
        with gzip.open(cache, "wt") as out:
            out.writelines(json.dumps(asdict(doc)) + "\n" for doc in unique.values())
    with gzip.open(cache, "rt") as lines:
        return [Doc(**json.loads(line)) for line in lines]


# ---------------------------------------------------------------------------------------------------
# 1. Signature throughput


@dataclass(frozen=True)
class Timing:
    system: str
    docs: int
    seconds: float
    cpu_seconds: float

    @property
    def docs_per_core_second(self) -> float:
        """Per CPU second of this one-threaded process, so that other load on the machine does not count."""
        return self.docs / self.cpu_seconds


def timed(system: str, run: Callable[[Sequence[str]], object], texts: Sequence[str]) -> Timing:
    run(texts[:2])  # warm-up: lazy imports, spaCy's tokenizer, numpy's first calls
    wall, cpu = time.perf_counter(), time.process_time()
    run(texts)
    timing = Timing(system, len(texts), time.perf_counter() - wall, time.process_time() - cpu)
    progress(f"{system}: {timing.docs_per_core_second:,.0f} docs/s per core")
    return timing


def tokenmill_run(texts: Sequence[str]) -> None:
    hasher = MinHasher(PRESETS["fineweb"])
    for start in range(0, len(texts), BATCH):
        hasher.band_keys_batch(texts[start : start + BATCH])


def datasketch_run(texts: Sequence[str]) -> None:
    from datasketch import MinHash

    for text in texts:
        words = normalize_for_dedup(text).split()
        minhash = MinHash(num_perm=112, scheme="affine64")
        for i in range(max(1, len(words) - 4)):
            minhash.update(" ".join(words[i : i + 5]).encode())


def datatrove_runner(work: Path) -> Callable[[Sequence[str]], None]:
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature

    step = MinhashDedupSignature(output_folder=str(work / "datatrove-signatures"), config=MinhashConfig())

    def run(texts: Sequence[str]) -> None:
        for text in texts:
            shingles = step.get_shingles(text)
            if shingles.size:
                step.get_signature(shingles)

    return run


def signatures(docs: list[Doc], work: Path) -> dict[str, Any]:
    texts = [doc.text for doc in docs]
    timings = [
        timed("tokenmill MinHasher (numpy)", tokenmill_run, texts),
        timed("datasketch MinHash.update per shingle", datasketch_run, texts),
        timed("datatrove MinhashDedupSignature", datatrove_runner(work), texts),
    ]
    datatrove = timings[-1].docs_per_core_second
    words = np.array([len(text.split()) for text in texts])
    print(
        f"\n{len(texts):,} documents, {words.mean():,.0f} words on average (median {np.median(words):,.0f})"
    )
    print(f"{'system':<42}{'seconds':>9}{'cpu s':>9}{'docs/s/core':>13}{'vs datatrove':>14}")
    for timing in timings:
        rate = timing.docs_per_core_second
        seconds = f"{timing.seconds:>9.2f}{timing.cpu_seconds:>9.2f}"
        print(f"{timing.system:<42}{seconds}{rate:>13,.0f}{rate / datatrove:>13.1f}x")
    speedup = timings[0].docs_per_core_second / datatrove
    verdict = "met" if speedup >= SPEEDUP_TARGET else "MISSED"
    print(f"target: >= {SPEEDUP_TARGET:.0f}x datatrove per core -> {speedup:.1f}x, {verdict}")
    return {
        "documents": len(texts),
        "sources": {
            source: sum(doc.source == source for doc in docs) for source in sorted({d.source for d in docs})
        },
        "mean_words": float(words.mean()),
        "timings": [{**asdict(t), "docs_per_core_second": t.docs_per_core_second} for t in timings],
        "speedup_vs_datatrove": speedup,
    }


# ---------------------------------------------------------------------------------------------------
# 2. Quality on planted near-duplicates


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard of two sorted arrays of distinct shingle hashes."""
    shared = np.intersect1d(a, b, assume_unique=True).size
    return shared / (a.size + b.size - shared) if a.size + b.size else 1.0


def edited_copy(
    text: str, target: float, hasher: MinHasher, vocabulary: list[str], rng: random.Random
) -> tuple[str, float]:
    """(copy, exact Jaccard): the text after the first k of a random sequence of word edits (half
    replacements, a quarter each insertions and deletions), k found by bisection so that the Jaccard
    similarity of the shingle sets comes closest to `target`."""
    words = text.split()
    edits = [(rng.random(), rng.choice("rrid"), rng.choice(vocabulary)) for _ in range(len(words))]
    original = hasher.shingles(text)

    def apply(count: int) -> tuple[str, float]:
        copy = list(words)
        for where, kind, word in edits[:count]:
            position = int(where * len(copy))
            if kind == "r":
                copy[position] = word
            elif kind == "i":
                copy.insert(position, word)
            elif len(copy) > 1:
                del copy[position]
        joined = " ".join(copy)
        return joined, jaccard(original, hasher.shingles(joined))

    low, high = 0, len(edits)  # similarity falls (roughly) as the count grows
    while low < high:
        middle = (low + high) // 2
        if apply(middle)[1] > target:
            low = middle + 1
        else:
            high = middle
    candidates = [apply(count) for count in {max(low - 1, 0), low}]
    return min(candidates, key=lambda pair: abs(pair[1] - target))


def similar_pairs(
    shingle_sets: list[np.ndarray], min_jaccard: float, hot: int = 100
) -> dict[tuple[int, int], float]:
    """Every pair of documents with exact Jaccard >= min_jaccard.

    Candidates come from an inverted index: pairs sharing a shingle, counted per pair. Shingles found in
    more than `hot` documents (boilerplate) propose no pairs, so counts can fall short; candidates whose
    count reaches half the threshold get their Jaccard computed exactly."""
    count = len(shingle_sets)
    sizes = np.array([s.size for s in shingle_sets])
    values = np.concatenate(shingle_sets)
    owners = np.repeat(np.arange(count), sizes)
    order = np.argsort(values, kind="stable")
    values, owners = values[order], owners[order]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    group_sizes = np.diff(np.r_[starts, values.size])
    codes = []
    for size in range(2, min(hot, group_sizes.max(initial=1)) + 1):
        group_starts = starts[group_sizes == size]
        if group_starts.size:
            members = np.sort(owners[group_starts[:, None] + np.arange(size)], axis=1)
            first, second = np.triu_indices(size, 1)
            codes.append((members[:, first] * count + members[:, second]).ravel())
    pair_codes, shared = np.unique(np.concatenate(codes or [np.empty(0, np.int64)]), return_counts=True)
    a, b = pair_codes // count, pair_codes % count
    candidate = shared / (sizes[a] + sizes[b] - shared) >= min_jaccard / 2
    pairs = {}
    for i, j in zip(a[candidate].tolist(), b[candidate].tolist(), strict=True):
        similarity = jaccard(shingle_sets[i], shingle_sets[j])
        if similarity >= min_jaccard:
            pairs[(i, j)] = similarity
    return pairs


def band_edges(keys: np.ndarray) -> np.ndarray:
    """Candidate pairs (i < j): per band, documents next to each other in key order with equal keys. A
    bucket of k documents gives a chain of k - 1 edges, which connects it as all its pairs would."""
    edges = [np.empty((0, 2), dtype=np.int64)]
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        same = np.flatnonzero(keys[order[1:], band] == keys[order[:-1], band])
        edges.append(np.sort(np.stack([order[same], order[same + 1]], axis=1), axis=1))
    return np.unique(np.concatenate(edges), axis=0)


def components(edges: np.ndarray, count: int) -> list[list[int]]:
    """Connected components of more than one document, by union-find (the Spark job does this distributed)."""
    parent = list(range(count))

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for i, j in edges.tolist():
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for node in range(count):
        groups.setdefault(root(node), []).append(node)
    return [members for members in groups.values() if len(members) > 1]


def evaluate(
    clusters: list[list[int]], truth: dict[tuple[int, int], float], shingle_sets: list[np.ndarray]
) -> dict[str, Any]:
    """Recall over true pairs at Jaccard >= 0.8, precision over merged pairs (correct at >= 0.5)."""
    cluster_of = {node: index for index, members in enumerate(clusters) for node in members}
    positives = [pair for pair, similarity in truth.items() if similarity >= 0.8]
    recall = float(np.mean([cluster_of.get(i, -1) == cluster_of.get(j, -2) for i, j in positives]))
    merged = [pair for members in clusters for pair in combinations(sorted(members), 2)]
    false_merges = sorted(
        similarity
        for pair in merged
        if (similarity := truth.get(pair) or jaccard(shingle_sets[pair[0]], shingle_sets[pair[1]])) < 0.5
    )
    precision = 1 - len(false_merges) / len(merged) if merged else 1.0
    return {
        "recall_at_least_0_8": recall,
        "positives": len(positives),
        "precision": precision,
        "merged_pairs": len(merged),
        "clusters": len(clusters),
        "false_merge_jaccards": [round(similarity, 3) for similarity in false_merges],
        "met": recall >= RECALL_TARGET and precision >= PRECISION_TARGET,
    }


def merge_rates(
    clusters: list[list[int]], truth: dict[tuple[int, int], float], config: MinHashConfig
) -> list[dict[str, Any]]:
    """Per Jaccard bin: true pairs, how many ended in one cluster, and the S-curve's mean prediction."""
    cluster_of = {node: index for index, members in enumerate(clusters) for node in members}
    rows = []
    for low, high in ((0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0), (1.0, 1.01)):
        in_bin = {pair: s for pair, s in truth.items() if low <= s < high}
        predicted = [config.collision_probability(s) for s in in_bin.values()]
        rows.append(
            {
                "jaccard": f"{low:.1f}..{high:.1f}" if high <= 1 else "1.0",
                "pairs": len(in_bin),
                "merged": sum(cluster_of.get(i, -1) == cluster_of.get(j, -2) for i, j in in_bin),
                "s_curve": float(np.mean(predicted)) if predicted else 0.0,
            }
        )
    return rows


def quality(docs: list[Doc], preset: str, min_jaccards: Sequence[float], work: Path) -> dict[str, Any]:
    """The anchor in this process, then the Spark job with its default and each of `min_jaccards`: see
    the module docstring."""
    config = PRESETS[preset]
    hasher = MinHasher(config)
    rng = random.Random(2024)
    bases = [doc.text for doc in docs if len(doc.text.split()) >= 100]
    vocabulary = sorted({word for text in bases[:200] for word in text.split()})
    progress(f"planting {len(bases):,} edited copies (exact Jaccard uniform in 0.3..1.0)")
    texts, planted = list(bases), []
    for index, base in enumerate(bases):
        copy, _ = edited_copy(base, rng.uniform(0.3, 1.0), hasher, vocabulary, rng)
        planted.append((index, len(texts)))
        texts.append(copy)
    progress(f"anchor: signatures, band keys and union-find over {len(texts):,} documents ({preset})")
    lsh = components(band_edges(hasher.band_keys(hasher.signatures(texts))), len(texts))
    progress("exact similarities: all pairs >= 0.5 and every merged pair")
    shingle_sets = [hasher.shingles(text) for text in texts]
    truth = similar_pairs(shingle_sets, 0.5)
    anchor = evaluate(lsh, truth, shingle_sets)
    bins = merge_rates(lsh, truth, config)
    natural = len(truth) - sum(pair in truth for pair in planted)
    print(
        f"\n{len(texts):,} documents: {len(bases):,} real + {len(planted):,} planted copies; preset {preset} "
        f"({config.bands} x {config.rows}, threshold {config.threshold:.2f})"
    )
    print(f"pairs with Jaccard >= 0.5: {len(truth):,} ({natural:,} between real documents, not planted)")
    print(f"anchor's merge rate by Jaccard against the S-curve of {config.bands} x {config.rows} bands:")
    print(f"{'Jaccard':<10}{'pairs':>7}{'merged':>8}{'rate':>8}{'S-curve':>9}")
    for row in bins:
        rate = row["merged"] / row["pairs"] if row["pairs"] else 0.0
        print(f"{row['jaccard']:<10}{row['pairs']:>7}{row['merged']:>8}{rate:>8.3f}{row['s_curve']:>9.3f}")
    jobs = spark_quality(texts, truth, shingle_sets, lsh, preset, min_jaccards, work)
    print_quality(preset, anchor, jobs)
    return {
        "preset": preset,
        "documents": len(texts),
        "planted_pairs": len(planted),
        "pairs_at_least_0_5": len(truth),
        "natural_pairs_at_least_0_5": natural,
        "bins": bins,
        "anchor": anchor,
        "job": jobs,
    }


# ---------------------------------------------------------------------------------------------------
# 3. The Spark job, run as a subprocess and measured

TOKENMILL = REPO_ROOT / ".venv" / "bin" / "tokenmill"
SAMPLE_EVERY_S = 0.5
GIB = 2**30
STAGES = ("input", "keys", "components", "clusters", "pii_and_write")  # as stats/dedup.json names them
_PAGE, _TICKS = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Process:
    """One line of /proc/PID/stat, the fields we need."""

    pid: int
    parent: int
    name: str
    rss: int  # bytes
    cpu: float  # user + system seconds so far


def _processes() -> dict[int, Process]:
    """Every process of the machine. Only /proc/PID/stat is read: cheap enough to sample twice a second
    (smaps_rollup, for PSS, costs ~0.1 s of CPU per read of a JVM and stalls its page faults meanwhile)."""
    processes = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:  # exited while we looked
                continue
            name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            # the fields after the name: [1] parent, [11] utime, [12] stime, [21] rss in pages
            cpu = (int(rest[11]) + int(rest[12])) / _TICKS
            processes[int(entry.name)] = Process(
                int(entry.name), int(rest[1]), name, int(rest[21]) * _PAGE, cpu
            )
    return processes


def process_tree(root: int) -> list[Process]:
    """`root` and all its descendants."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for process in processes.values():
        children.setdefault(process.parent, []).append(process.pid)
    tree, index = [root], 0
    while index < len(tree):
        tree += children.get(tree[index], [])
        index += 1
    return [processes[pid] for pid in tree if pid in processes]


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used since boot (/proc/stat, idle and iowait out)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICKS


@dataclass(frozen=True)
class Sample:
    """The process tree at one moment: RSS and CPU seconds used so far, by command name (java: the JVM;
    python: Spark's Python workers; tokenmill: the driver)."""

    at: float  # seconds since the epoch
    rss: dict[str, int]
    cpu: dict[str, float]

    @property
    def total_rss(self) -> int:
        return sum(self.rss.values())


class TreeMonitor(threading.Thread):
    """Samples a process and all its descendants every SAMPLE_EVERY_S seconds (see `Sample`). The RSS
    sum counts pages that forked Python workers share once per worker: an upper bound."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[Sample] = []
        self._last: dict[int, tuple[str, float]] = {}  # pid -> (name, CPU seconds), exited ones too
        self._finished = threading.Event()

    def run(self) -> None:
        while not self._finished.is_set():
            rss: dict[str, int] = {}
            for process in process_tree(self.pid):
                rss[process.name] = rss.get(process.name, 0) + process.rss
                self._last[process.pid] = process.name, process.cpu
            cpu: dict[str, float] = {}
            for name, seconds in self._last.values():
                cpu[name] = cpu.get(name, 0.0) + seconds
            self.samples.append(Sample(time.time(), rss, cpu))
            self._finished.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        self._finished.set()
        self.join()


@dataclass(frozen=True)
class JobRun:
    """One `tokenmill dedup` run: wall time, the samples of its process tree, the CPU the rest of the
    machine used meanwhile (other engineers' work, which slows the run), and the job's stats."""

    root: Path
    wall_s: float
    others_cores: float
    samples: list[Sample]
    stats: dict[str, Any]

    @property
    def events(self) -> Path:
        """The Spark event log's directory."""
        return self.root.with_name(self.root.name + ".events")

    @property
    def cpu_s(self) -> float:
        return sum(self.samples[-1].cpu.values())

    @property
    def peak(self) -> Sample:
        return max(self.samples, key=lambda sample: sample.total_rss)


def run_dedup(corpus: Path, root: Path, *options: str) -> JobRun:
    """`tokenmill dedup -o ROOT --input CORPUS --master local[2] OPTIONS` from scratch (ROOT is removed
    first, so the job's already-done marker never skips it). Its output goes to ROOT.log, the samples
    to ROOT.monitor.jsonl and Spark's event log (task metrics, for `stage_profile`) to ROOT.events/."""
    shutil.rmtree(root, ignore_errors=True)
    events = root.with_name(root.name + ".events")
    shutil.rmtree(events, ignore_errors=True)
    events.mkdir(parents=True)
    command = [str(TOKENMILL), "dedup", "-o", str(root), "--input", str(corpus), "--master", "local[2]"]
    command += options
    event_log = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": events.as_uri(),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
    }
    submit = " ".join(f"--conf {key}={value}" for key, value in event_log.items())
    environment = {**os.environ, "PYSPARK_SUBMIT_ARGS": f"{submit} pyspark-shell"}
    log = root.with_name(root.name + ".log")
    progress(" ".join(command[1:]) + f"  (log: {log})")
    with log.open("w") as output:
        started, busy = time.perf_counter(), machine_busy_seconds()
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=environment
        )
        monitor = TreeMonitor(process.pid)
        monitor.start()
        returncode = process.wait()
        wall, busy = time.perf_counter() - started, machine_busy_seconds() - busy
        monitor.stop()
    with root.with_name(root.name + ".monitor.jsonl").open("w") as out:
        out.writelines(json.dumps(asdict(sample)) + "\n" for sample in monitor.samples)
    stats_path = root / "stats" / "dedup.json"
    if returncode or not stats_path.is_file():
        tail = "\n".join(log.read_text().splitlines()[-30:])
        raise RuntimeError(f"tokenmill dedup failed (exit {returncode}); the end of {log}:\n{tail}")
    cpu = sum(monitor.samples[-1].cpu.values())
    run = JobRun(root, wall, max(busy - cpu, 0.0) / wall, monitor.samples, json.loads(stats_path.read_text()))
    peak = {name: round(size / GIB, 2) for name, size in sorted(run.peak.rss.items())}
    progress(
        f"done in {wall:,.1f} s ({run.cpu_s:,.0f} CPU s; other work on the machine meanwhile: "
        f"{run.others_cores:.2f} cores), peak RSS {run.peak.total_rss / GIB:.2f} GiB {peak}"
    )
    return run


def _spark_events(directory: Path) -> list[dict[str, Any]]:
    (path,) = directory.iterdir()  # one application per run
    with path.open() as lines:
        return [json.loads(line) for line in lines]


_OPERATORS = ("MapInArrow", "Generate", "Window", "SortMergeJoin", "BroadcastHashJoin", "WriteFiles", "Union")


def stage_profile(run: JobRun) -> list[dict[str, Any]]:
    """Per stage of the job: Spark actions and tasks, task seconds (slot time; local[2] has 2 slots),
    JVM CPU and GC seconds, spilled and shuffled GiB (from the event log), CPU seconds of the JVM and of
    the Python workers and the peak RSS (from the samples), and the three slowest actions with their
    main operators. Stages are the stats' seconds laid end to end from the first Spark action (the input
    count); an action belongs to the stage that holds its midpoint. "final counts" is what follows: the
    job's own statistics."""
    actions: dict[int, dict[str, Any]] = {}
    action_of_stage: dict[int, int] = {}
    for event in _spark_events(run.events):
        kind = event["Event"].rsplit(".", 1)[-1]
        if kind == "SparkListenerSQLExecutionStart":
            plan = event["physicalPlanDescription"]
            operators = [name for name in _OPERATORS if name in plan]
            name = event["description"].split(" at ")[0] + (f" [{', '.join(operators)}]" if operators else "")
            actions[event["executionId"]] = {"name": name, "start": event["time"] / 1000, "tasks": []}
        elif kind == "SparkListenerSQLExecutionEnd" and event["executionId"] in actions:
            actions[event["executionId"]]["end"] = event["time"] / 1000
        elif kind == "SparkListenerJobStart" and "spark.sql.execution.id" in event.get("Properties", {}):
            for stage in event["Stage IDs"]:
                action_of_stage[stage] = int(event["Properties"]["spark.sql.execution.id"])
        elif kind == "SparkListenerTaskEnd" and event["Stage ID"] in action_of_stage:
            actions[action_of_stage[event["Stage ID"]]]["tasks"].append(event.get("Task Metrics") or {})
    for action in actions.values():
        action.setdefault("end", action["start"])
    clock = min(action["start"] for action in actions.values())
    boundaries = []
    for stage in STAGES:
        boundaries.append((stage, clock, clock + run.stats["seconds"].get(stage, 0.0)))
        clock += run.stats["seconds"].get(stage, 0.0)
    boundaries.append(("final counts", clock, max(clock, *(action["end"] for action in actions.values()))))

    def cpu_at(moment: float) -> dict[str, float]:
        return min(run.samples, key=lambda sample: abs(sample.at - moment)).cpu

    rows = []
    for stage, start, end in boundaries:
        last = stage == "final counts"
        inside = [
            action
            for action in actions.values()
            if start <= (action["start"] + action["end"]) / 2 < end or last and action["start"] >= start
        ]
        tasks = [task for action in inside for task in action["tasks"]]

        def total(*path: str, tasks: list[dict[str, Any]] = tasks) -> float:
            values = []
            for task in tasks:
                value: Any = task
                for key in path:
                    value = value.get(key, {}) if isinstance(value, dict) else 0
                values.append(value if isinstance(value, (int, float)) else 0)
            return float(sum(values))

        before, after = cpu_at(start), cpu_at(end)
        resident = [sample.total_rss for sample in run.samples if start <= sample.at <= end]
        slowest = sorted(inside, key=lambda action: action["end"] - action["start"], reverse=True)
        rows.append(
            {
                "stage": stage,
                "seconds": end - start,
                "actions": len(inside),
                "tasks": len(tasks),
                "task_s": total("Executor Run Time") / 1000,
                "jvm_task_cpu_s": total("Executor CPU Time") / 1e9,
                "gc_s": total("JVM GC Time") / 1000,
                "spilled_gib": total("Disk Bytes Spilled") / GIB,
                "shuffle_written_gib": total("Shuffle Write Metrics", "Shuffle Bytes Written") / GIB,
                "cpu_s": {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after},
                "peak_rss_gib": max(resident, default=0) / GIB,
                "slowest": [
                    (action["name"], round(action["end"] - action["start"], 1)) for action in slowest[:3]
                ],
            }
        )
    return rows


def print_profile(documents: int, rows: list[dict[str, Any]]) -> None:
    print(f"\nwhere the time goes, {documents:,} documents (Spark event log and /proc samples):")
    print(
        f"{'stage':<15}{'s':>7}{'actions':>8}{'tasks':>7}{'task s':>8}{'busy':>6}{'JVM cpu':>9}"
        f"{'py cpu':>8}{'GC s':>6}{'spill':>7}{'shuffle':>8}{'peak':>6}  slowest actions (s)"
    )
    for row in rows:
        cpu = row["cpu_s"]
        python = sum(value for name, value in cpu.items() if name.startswith("python"))
        slowest = "; ".join(f"{name} {seconds}" for name, seconds in row["slowest"])
        print(
            f"{row['stage']:<15}{row['seconds']:>7.1f}{row['actions']:>8}{row['tasks']:>7}"
            f"{row['task_s']:>8.0f}{row['task_s'] / (2 * row['seconds']):>6.0%}{cpu.get('java', 0):>9.0f}"
            f"{python:>8.0f}{row['gc_s']:>6.0f}{row['spilled_gib']:>7.2f}{row['shuffle_written_gib']:>8.2f}"
            f"{row['peak_rss_gib']:>6.1f}"
            f"  {slowest}"
        )
    print("busy: task seconds / (2 slots x stage seconds); spill, shuffle written and peak RSS in GiB")


def read_clusters(root: Path) -> dict[str, str]:
    """id -> cluster_id from ROOT/dedup/clusters."""
    table = pq.read_table(root / "dedup" / "clusters", columns=["id", "cluster_id"])
    return dict(zip(table.column("id").to_pylist(), table.column("cluster_id").to_pylist(), strict=True))


# ---------------------------------------------------------------------------------------------------
# 4. Quality through the Spark job


def spark_quality(
    texts: list[str],
    truth: dict[tuple[int, int], float],
    shingle_sets: list[np.ndarray],
    anchor: list[list[int]],
    preset: str,
    min_jaccards: Sequence[float],
    work: Path,
) -> dict[str, dict[str, Any]]:
    """The planted corpus through `tokenmill dedup` with its default --min-jaccard, then once per value
    of `min_jaccards`; per run, keyed by the value it used: recall and precision from ROOT/dedup/clusters,
    computed by `evaluate` exactly as for the anchor, the merge rate per Jaccard bin, and whether the
    clusters equal the anchor's (they must with --min-jaccard 0: the same band keys connect the same
    documents)."""
    config = PRESETS[preset]
    directory = work / "quality-spark"
    corpus = directory / "corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir(parents=True)
    ids = [f"q-{index:06d}" for index in range(len(texts))]
    pq.write_table(pa.table({"id": ids, "text": texts}), corpus / "part-00000.parquet")
    runs = {"default": run_dedup(corpus, directory / "run-default", "--preset", preset)}
    for min_jaccard in min_jaccards:
        options = ("--preset", preset, "--min-jaccard", str(min_jaccard))
        runs[f"{min_jaccard:g}"] = run_dedup(corpus, directory / f"run-j{min_jaccard:g}", *options)
    results = {}
    for name, run in runs.items():
        members: dict[str, list[int]] = {}
        for doc_id, cluster_id in read_clusters(run.root).items():
            members.setdefault(cluster_id, []).append(int(doc_id[2:]))
        clusters = [sorted(group) for group in members.values() if len(group) > 1]
        results[f"{run.stats['min_jaccard']:g}"] = {
            "min_jaccard": run.stats["min_jaccard"],
            "default": name == "default",
            **evaluate(clusters, truth, shingle_sets),
            "same_as_anchor": {frozenset(c) for c in clusters} == {frozenset(c) for c in anchor},
            "bins": merge_rates(clusters, truth, config),
            "fuzzy_duplicates": run.stats["fuzzy_duplicates"],
            "exact_duplicates": run.stats["exact_duplicates"],
            "wall_s": round(run.wall_s, 1),
        }
    return results


def print_quality(preset: str, anchor: dict[str, Any], jobs: dict[str, dict[str, Any]]) -> None:
    """The anchor's and each job run's recall and precision, one table, with the targets' verdicts."""
    targets = f"recall (pairs >= 0.8) >= {RECALL_TARGET}, precision (merges >= 0.5) >= {PRECISION_TARGET}"
    print(f"\ntargets: {targets}")
    print(f"{'':<48}{'recall':>8}{'precision':>11}{'merged':>8}{'clusters':>10}{'false':>7}{'wall s':>8}")
    _print_quality_row("anchor: FineWeb's plain banding, in process", anchor, "")
    for row in jobs.values():
        setting = "(default) " if row["default"] else ""
        _print_quality_row(
            f"tokenmill dedup {setting}--min-jaccard {row['min_jaccard']:g}", row, row["wall_s"]
        )
        rates = ", ".join(f"{b['jaccard']} {b['merged'] / b['pairs']:.2f}" for b in row["bins"] if b["pairs"])
        print(f"{'':<6}merge rate by Jaccard: {rates}")
        print(f"{'':<6}clusters = the anchor's: {row['same_as_anchor']}")
    print(f"(the jobs: `tokenmill dedup --master local[2] --preset {preset}`)")


def _print_quality_row(name: str, row: dict[str, Any], wall_s: float | str) -> None:
    counts = f"{row['merged_pairs']:>8,}{row['clusters']:>10,}{len(row['false_merge_jaccards']):>7}"
    verdict = "met" if row["met"] else "MISSED"
    print(
        f"{name:<48}{row['recall_at_least_0_8']:>8.4f}{row['precision']:>11.4f}{counts}{wall_s:>8}  {verdict}"
    )
    print(f"{'':<6}false merges at Jaccard: {', '.join(map(str, row['false_merge_jaccards'])) or '-'}")


# ---------------------------------------------------------------------------------------------------
# 5. Scale: generated corpora of 100k, 300k and 1M documents through the Spark job

SCALE_SIZES = (100_000, 300_000, 1_000_000)
SCALE_SEED = 20240917
SCALE_FILES = 16
SCALE_VERSION = 1  # part of every corpus's manifest: a change rebuilds the cached corpora
NEAR_SHARE, EXACT_SHARE = 0.10, 0.03
WORDS = (200, 600)  # a base document's length is drawn uniformly from this range
SENTENCE_WORDS = (5, 80)
WALL_TARGET_S, PEAK_TARGET_GIB, GROWTH_LIMIT = 10 * 60, 8.0, 1.0
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“'])")


def sentence_pool(docs: list[Doc]) -> list[str]:
    """The distinct sentences of 5..80 words of the real corpus, sorted (so the pool is deterministic)."""
    sentences = set()
    for doc in docs:
        for line in doc.text.splitlines():
            for sentence in _SENTENCE_END.split(line.strip()):
                if SENTENCE_WORDS[0] <= len(sentence.split()) <= SENTENCE_WORDS[1]:
                    sentences.add(sentence)
    return sorted(sentences)


class ScaleCorpus:
    """Deterministic documents from the sentence pool. Base document f: sentences drawn at random (with
    its own seed) until a length drawn from WORDS is reached, in paragraphs of 3..7 sentences; two bases
    share a sentence rarely, so nearly all are unique. A near-duplicate is a base after 0.5..3% of its
    words were replaced, inserted or deleted, plus (30%) an appended sentence, like a changed footer."""

    def __init__(self, pool: list[str]) -> None:
        self.pool = pool
        self.lengths = [len(sentence.split()) for sentence in pool]

    def base(self, family: int) -> str:
        rng = random.Random(f"{SCALE_SEED}:base:{family}")
        target, words = rng.randint(*WORDS), 0
        paragraphs: list[str] = []
        while words < target:
            paragraph = [rng.randrange(len(self.pool)) for _ in range(rng.randint(3, 7))]
            words += sum(self.lengths[index] for index in paragraph)
            paragraphs.append(" ".join(self.pool[index] for index in paragraph))
        return "\n\n".join(paragraphs)

    def near_copy(self, text: str, seed: str) -> str:
        rng = random.Random(f"{SCALE_SEED}:near:{seed}")
        words = text.split(" ")  # paragraph breaks stay inside their words

        def any_word() -> str:
            return rng.choice(self.pool[rng.randrange(len(self.pool))].split())

        for _ in range(max(1, round(rng.uniform(0.005, 0.03) * len(words)))):
            position, kind = rng.randrange(len(words)), rng.choice("rrid")
            if kind == "r":
                words[position] = any_word()
            elif kind == "i":
                words.insert(position, any_word())
            elif len(words) > 1:
                del words[position]
        if rng.random() < 0.3:
            words.append("\n\n" + self.pool[rng.randrange(len(self.pool))])
        return " ".join(words)


def build_scale_corpus(count: int, pool: list[str], directory: Path) -> dict[str, Any]:
    """DIRECTORY/corpus/part-*.parquet (id, text, url) and DIRECTORY/truth.parquet (id, family, kind,
    jaccard: the exact Jaccard to the family's base); cached by DIRECTORY/manifest.json.

    Of `count` documents, 10% are near-duplicates and 3% exact copies of a base drawn at random (a base
    can get several), the rest bases. All are shuffled, then named doc-0000001... in that order."""
    manifest_path = directory / "manifest.json"
    wanted = {"version": SCALE_VERSION, "documents": count, "seed": SCALE_SEED, "pool": len(pool)}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if all(manifest.get(key) == value for key, value in wanted.items()):
            return manifest
    progress(f"generating {count:,} documents under {directory}")
    shutil.rmtree(directory, ignore_errors=True)
    (directory / "corpus").mkdir(parents=True)
    rng = np.random.default_rng(SCALE_SEED)
    near, exact = round(count * NEAR_SHARE), round(count * EXACT_SHARE)
    bases = count - near - exact
    families = np.concatenate([np.arange(bases), rng.integers(0, bases, near), rng.integers(0, bases, exact)])
    kinds = np.repeat(np.array(["base", "near", "exact"]), [bases, near, exact])
    order = rng.permutation(count)  # position -> row of the plan
    sites = rng.integers(0, 20_000, count)
    corpus, hasher = ScaleCorpus(pool), MinHasher(PRESETS["fineweb"])
    truth: dict[str, list] = {"id": [], "family": [], "kind": [], "jaccard": []}
    words = 0
    for part, positions in enumerate(np.array_split(np.arange(count), SCALE_FILES)):
        ids, texts, urls = [], [], []
        for position in positions.tolist():
            row = int(order[position])
            family, kind = int(families[row]), str(kinds[row])
            text = corpus.base(family)
            similarity = 1.0
            if kind == "near":
                copy = corpus.near_copy(text, str(row))
                similarity = jaccard(hasher.shingles(text), hasher.shingles(copy))
                text = copy
            ids.append(f"doc-{position + 1:07d}")
            texts.append(text)
            urls.append(f"https://www.site{sites[position]:05d}.example/{kind}/{row}")
            words += text.count(" ") + 1
            for key, value in zip(truth, (ids[-1], family, kind, similarity), strict=True):
                truth[key].append(value)
        table = pa.table({"id": ids, "text": texts, "url": urls})
        pq.write_table(table, directory / "corpus" / f"part-{part:05d}.parquet")
    pq.write_table(pa.table(truth), directory / "truth.parquet")
    near_jaccards = np.array([j for j, k in zip(truth["jaccard"], truth["kind"], strict=True) if k == "near"])
    manifest = {
        **wanted,
        "files": SCALE_FILES,
        "bases": bases,
        "near_duplicates": near,
        "exact_copies": exact,
        "near_at_least_0_8": int((near_jaccards >= 0.8).sum()),
        "near_jaccard_quartiles": [round(float(q), 3) for q in np.quantile(near_jaccards, [0.25, 0.5, 0.75])],
        "mean_words": words / count,
        "parquet_bytes": sum(path.stat().st_size for path in (directory / "corpus").iterdir()),
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    progress(f"corpus: {manifest}")
    return manifest


def planted_recall(root: Path, truth_path: Path) -> dict[str, Any]:
    """How many planted copies ended in their base's cluster (exact copies; near-duplicates overall and
    by true Jaccard), and how many unrelated documents were merged: per cluster, the number of distinct
    families beyond the first (bases share sentences only by chance, so these are false merges)."""
    cluster_of = read_clusters(root)
    truth = pq.read_table(truth_path).to_pydict()
    base_cluster = {
        family: cluster_of[doc_id]
        for doc_id, family, kind in zip(truth["id"], truth["family"], truth["kind"], strict=True)
        if kind == "base"
    }
    found: dict[str, list[bool]] = {"exact": [], "near": [], "near >= 0.8": [], "near < 0.8": []}
    families_in: dict[str, set[int]] = {}
    rows = zip(truth["id"], truth["family"], truth["kind"], truth["jaccard"], strict=True)
    for doc_id, family, kind, similarity in rows:
        families_in.setdefault(cluster_of[doc_id], set()).add(family)
        if kind == "base":
            continue
        together = cluster_of[doc_id] == base_cluster[family]
        found[kind].append(together)
        if kind == "near":
            found["near >= 0.8" if similarity >= 0.8 else "near < 0.8"].append(together)
    recall = {name: float(np.mean(hits)) if hits else None for name, hits in found.items()}
    return {
        "recall": recall,
        "planted": {name: len(hits) for name, hits in found.items()},
        "unrelated_merges": sum(len(families) - 1 for families in families_in.values()),
    }


def growth_exponent(small: dict[str, Any], large: dict[str, Any], key: str = "wall_s") -> float:
    """log(t2 / t1) / log(n2 / n1): 1 is linear; n log n gives slightly more than 1."""
    return math.log(large[key] / small[key]) / math.log(large["documents"] / small["documents"])


def nlogn_exponent(small: int, large: int) -> float:
    return math.log(large * math.log(large) / (small * math.log(small))) / math.log(large / small)


def scale_run(count: int, pool: list[str], work: Path) -> dict[str, Any]:
    """One size: the corpus (built or reused), the job on it, its figures and the planted recall."""
    directory = work / f"scale-{count}"
    manifest = build_scale_corpus(count, pool, directory)
    run = run_dedup(directory / "corpus", directory / "run")
    stats = run.stats
    seconds = {stage: stats["seconds"].get(stage, 0.0) for stage in STAGES}
    seconds["other"] = round(stats["total_seconds"] - sum(seconds.values()), 3)
    return {
        "documents": count,
        "wall_s": round(run.wall_s, 2),
        "docs_per_s": count / run.wall_s,
        "cpu_s": round(run.cpu_s, 1),
        "others_cores": round(run.others_cores, 2),
        "peak_rss_gib": round(run.peak.total_rss / GIB, 3),
        "peak_by_process_gib": {name: round(size / GIB, 2) for name, size in sorted(run.peak.rss.items())},
        "seconds": seconds,
        "job_total_s": stats["total_seconds"],
        "exact_duplicates": stats["exact_duplicates"],
        "fuzzy_duplicates": stats["fuzzy_duplicates"],
        "survivors": stats["survivors"],
        "balanced": stats["balanced"],
        **planted_recall(run.root, directory / "truth.parquet"),
        "profile": stage_profile(run),
        "corpus": manifest,
    }


def print_scale(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The table, the growth between consecutive sizes and the verdicts; returns the verdicts."""
    stages = "".join(f"{stage:>14}" for stage in (*STAGES, "other"))
    print("\nseconds per stage are the job's (stats/dedup.json); others = cores other work used meanwhile")
    print(f"{'n':>9}{'wall s':>9}{'docs/s':>8}{'CPU s':>8}{'others':>8}{'peak GiB':>10}{stages}")
    for run in runs:
        # runs stored by an older job may lack a stage ("input")
        seconds = "".join(f"{run['seconds'].get(stage, 0.0):>14.1f}" for stage in (*STAGES, "other"))
        print(
            f"{run['documents']:>9,}{run['wall_s']:>9.1f}{run['docs_per_s']:>8.0f}{run['cpu_s']:>8.0f}"
            f"{run['others_cores']:>8.2f}{run['peak_rss_gib']:>10.2f}{seconds}"
        )
    for run in runs:
        if run.get("profile"):
            print_profile(run["documents"], run["profile"])
    print(
        f"\n{'n':>9}{'exact':>9}{'fuzzy':>9}{'survivors':>11}  recall: exact, near, near>=0.8, near<0.8"
        f"{'unrelated merges':>18}"
    )
    for run in runs:
        recall = ", ".join(f"{run['recall'][k]:.4f}" for k in ("exact", "near", "near >= 0.8", "near < 0.8"))
        print(
            f"{run['documents']:>9,}{run['exact_duplicates']:>9,}{run['fuzzy_duplicates']:>9,}"
            f"{run['survivors']:>11,}  {recall:<40}{run['unrelated_merges']:>9,}"
        )
    growth = []
    for small, large in zip(runs[:-1], runs[1:], strict=True):
        row = {
            "from": small["documents"],
            "to": large["documents"],
            "wall": growth_exponent(small, large),
            "cpu": growth_exponent(small, large, "cpu_s"),
            "n_log_n": nlogn_exponent(small["documents"], large["documents"]),
            **{
                stage: math.log(large["seconds"][stage] / small["seconds"][stage])
                / math.log(large["documents"] / small["documents"])
                for stage in STAGES
                if small["seconds"].get(stage) and large["seconds"].get(stage)
            },
        }
        growth.append(row)
    if growth:
        print(
            f"\ngrowth exponent log(t2/t1)/log(n2/n1){'wall':>8}{'CPU s':>8}{'n log n':>9}"
            + "".join(f"{stage:>15}" for stage in STAGES)
        )
        for row in growth:
            pair = f"{row['from']:,} -> {row['to']:,}"
            print(
                f"{pair:<38}{row['wall']:>8.2f}{row['cpu']:>8.2f}{row['n_log_n']:>9.2f}"
                + "".join(f"{row[stage]:>15.2f}" if stage in row else f"{'-':>15}" for stage in STAGES)
            )
    verdicts: dict[str, Any] = {}
    largest = runs[-1]
    minutes = f"{WALL_TARGET_S / 60:.0f}_min"
    if largest["documents"] >= 1_000_000:
        verdicts[f"1M_wall_at_most_{minutes}"] = largest["wall_s"] <= WALL_TARGET_S
        # a lower bound on the wall time with both cores free: its CPU seconds spread perfectly on two
        verdicts[f"1M_cpu_s_over_2_cores_at_most_{minutes}"] = largest["cpu_s"] / 2 <= WALL_TARGET_S
    verdicts["peak_at_most_8_gib"] = all(run["peak_rss_gib"] <= PEAK_TARGET_GIB for run in runs)
    if growth:
        verdicts["growth_of_the_two_largest_at_most_1"] = growth[-1]["wall"] <= GROWTH_LIMIT
    print(
        f"\ntargets: 1M in <= {WALL_TARGET_S / 60:.0f} min, peak <= {PEAK_TARGET_GIB:.0f} GiB, "
        f"growth exponent <= {GROWTH_LIMIT} between the two largest sizes"
    )
    for name, met in verdicts.items():
        print(f"  {name}: {'met' if met else 'MISSED'}")
    return {"growth": growth, "verdicts": verdicts}


def scale(docs: list[Doc], work: Path, sizes: Sequence[int]) -> dict[str, Any]:
    """Each size through `tokenmill dedup --master local[2]` (fineweb preset), smallest first. Runs of
    other sizes stored in WORK/dedup_results.json by an earlier invocation join the table (no sizes:
    only the table of the stored runs)."""
    pool = sentence_pool(docs)
    progress(f"sentence pool: {len(pool):,} sentences from {len(docs):,} documents")
    path = work / "dedup_results.json"
    stored = json.loads(path.read_text()).get("scale", {}).get("runs", {}) if path.is_file() else {}
    runs = {int(size): run for size, run in stored.items()}
    for count in sorted(sizes):
        runs[count] = scale_run(count, pool, work)
        # saved after every size, so a later failure or interruption keeps the finished ones
        write_results(path, {"scale": {"runs": {str(count): runs[count]}}})
    summary = print_scale([runs[count] for count in sorted(runs)])
    return {"runs": {str(count): runs[count] for count in sorted(runs)}, **summary}


def crawl_cost(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Core-seconds per run for the cost projection (bench/crawl_cost.py): the largest scale run (wall
    x the 2 cores of local[2], and its survivors as `kept`) and, when the signatures part has run,
    datatrove's and tokenmill's signature stage alone (their one-thread CPU seconds)."""
    rows = []
    runs = results.get("scale", {}).get("runs", {})
    if runs:
        largest = runs[max(runs, key=int)]
        rows.append(
            {
                "stage": "dedup",
                "system": "tokenmill",
                "records": largest["documents"],
                "kept": largest["survivors"],
                "core_seconds": round(largest["wall_s"] * 2, 1),
            }
        )
    for timing in results.get("signatures", {}).get("timings", []):
        for system in ("datatrove", "tokenmill"):
            if timing["system"].startswith(system):
                rows.append(
                    {
                        "stage": "dedup (signatures only)",
                        "system": system,
                        "records": timing["docs"],
                        "core_seconds": round(timing["cpu_seconds"], 2),
                        "core_seconds_per_document": timing["cpu_seconds"] / timing["docs"],
                    }
                )
    return rows


# ---------------------------------------------------------------------------------------------------
# 6. Speedups: each change to the job against the way it was, on the same data in the same run


def old_keys(texts: list[str], hasher: MinHasher) -> None:
    """The keys as they were: the text normalized for its hash, then again inside `signatures`."""
    [text_hash(normalize_for_dedup(text)) for text in texts]
    hasher.band_keys(hasher.signatures(texts))


def new_keys(texts: list[str], hasher: MinHasher) -> None:
    batch = pa.RecordBatch.from_pydict({"id": [str(i) for i in range(len(texts))], "text": texts})
    for _ in dedup_keys(iter([batch]), hasher, with_signature=True):
        pass


def old_bucket_edges(members: Any) -> Any:
    """The edges as they were: buckets grouped for their smallest id, joined back to their members."""
    from pyspark.sql import functions as F

    roots = (
        members.groupBy("band", "key")
        .agg(F.min("id").alias("root"), F.count("*").alias("size"))
        .where(F.col("size") > 1)
    )
    links = members.join(roots, ["band", "key"]).where(F.col("id") != F.col("root"))
    return links.groupBy(F.col("id").alias("a"), F.col("root").alias("b")).agg(F.min("band").alias("band"))


def old_scrub(text: str) -> tuple[str, dict[str, int]]:
    """`scrub` as it was: the IPv6 pattern on every text with a colon, the IPv4 pattern on every text."""
    counts = dict.fromkeys(pii.PII_KINDS, 0)
    if "@" in text:
        text = pii._substitute(pii._EMAIL, text, pii._email_dummy, counts, "email")
    if ":" in text:
        text = pii._substitute(pii._IPV6, text, pii._ipv6_dummy, counts, "ipv6")
    text = pii._substitute(pii._IP, text, pii._ip_dummy, counts, "ip")
    return text, counts


def _cpu_seconds(run: Callable[[], object]) -> float:
    started = time.process_time()
    run()
    return time.process_time() - started


def _spark_seconds(frame: Any) -> float:
    """Wall seconds to compute every row of `frame` (written to Spark's no-op sink)."""
    started = time.perf_counter()
    frame.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started


def _compare(name: str, unit: str, old: Callable[[], float], new: Callable[[], float], repeats: int) -> dict:
    """The best of `repeats` alternating runs of each way (alternating: load from other work on the
    machine falls on both)."""
    olds, news = [], []
    for _ in range(repeats):
        olds.append(old())
        news.append(new())
    row = {"speedup": name, "unit": unit, "old_s": min(olds), "new_s": min(news)}
    row["ratio"] = row["old_s"] / row["new_s"]
    progress(f"{name}: {row['old_s']:.2f} -> {row['new_s']:.2f} {unit} ({row['ratio']:.2f}x)")
    return row


def speedups(docs: list[Doc], work: Path, size: int, repeats: int) -> dict[str, Any]:
    """a. keys: normalize once per document, d. PII: the IP pre-checks (CPU s in this process, on the
    real corpus; the scrubbed texts must be equal); b. bucket roots by a window (the edges must be
    equal), c. survivors by a broadcast anti-join of the removed ids (the planted copies): Spark wall
    seconds on local[2] over the scale corpus of `size` documents."""
    from pyspark.sql import functions as F

    from tokenmill.jobs.spark.session import build_session
    from tokenmill.jobs.stages import dedup as job
    from tokenmill.pipeline.storage import S3Options

    texts = [doc.text for doc in docs]
    hasher = MinHasher(PRESETS["fineweb"])
    rows = [
        _compare(
            "a. keys: normalize once per document",
            "CPU s",
            lambda: _cpu_seconds(lambda: old_keys(texts, hasher)),
            lambda: _cpu_seconds(lambda: new_keys(texts, hasher)),
            repeats,
        )
    ]
    if [scrub(text) for text in texts] != [old_scrub(text) for text in texts]:
        raise AssertionError("the IP pre-checks changed a scrubbed text")
    pii_row = _compare(
        "d. PII: IP pre-checks",
        "CPU s",
        lambda: _cpu_seconds(lambda: [old_scrub(text) for text in texts]),
        lambda: _cpu_seconds(lambda: [scrub(text) for text in texts]),
        repeats,
    )

    directory = work / f"scale-{size}"
    build_scale_corpus(size, sentence_pool(docs), directory)
    spark = build_session("local[2]", "bench-dedup-speedups")
    corpus = job.read_dataset(spark, str(directory / "corpus"), S3Options())
    keyed = spark.sparkContext.accumulator(0)
    progress(f"speedups: keys of {size:,} documents in Spark (once, for b and c)")
    keys = job.document_keys(corpus, "fineweb", True, keyed).localCheckpoint()
    members = job.bucket_members(keys, corpus, False).localCheckpoint()
    if sorted(old_bucket_edges(members).collect()) != sorted(job.bucket_edges(members).collect()):
        raise AssertionError("the window gave other edges")
    rows.append(
        _compare(
            "b. bucket roots by a window",
            "wall s",
            lambda: _spark_seconds(old_bucket_edges(members)),
            lambda: _spark_seconds(job.bucket_edges(members)),
            repeats,
        )
    )
    truth = spark.read.parquet(str(directory / "truth.parquet"))
    clusters = truth.select("id", (F.col("kind") == "base").alias("kept")).localCheckpoint()
    removed = clusters.where(~F.col("kept")).select("id")
    removed_count = removed.count()
    kept_ids = clusters.where("kept").select("id")
    # the job's old plan, as its event log shows it: a sort-merge join, which shuffles every text (the
    # size estimate of the checkpointed clusters is past Spark's broadcast threshold)
    survivors_old = corpus.join(kept_ids.hint("merge"), "id", "left_semi")
    survivors_new = job.with_ids(corpus, removed, removed_count, keep=False)
    if sorted(survivors_old.select("id").collect()) != sorted(survivors_new.select("id").collect()):
        raise AssertionError("the anti-join kept other documents")
    rows.append(
        _compare(
            "c. survivors: broadcast anti-join",
            "wall s",
            lambda: _spark_seconds(survivors_old),
            lambda: _spark_seconds(survivors_new),
            repeats,
        )
    )
    spark.stop()
    rows.append(pii_row)
    print(f"\n{len(texts):,} real documents (a, d); the scale corpus of {size:,} documents (b, c), local[2]")
    print(f"{'speedup':<48}{'unit':>8}{'old':>9}{'new':>9}{'ratio':>8}")
    for row in rows:
        print(
            f"{row['speedup']:<48}{row['unit']:>8}{row['old_s']:>9.2f}{row['new_s']:>9.2f}{row['ratio']:>7.2f}x"
        )
    return {"documents": len(texts), "scale_documents": size, "repeats": repeats, "rows": rows}


# ---------------------------------------------------------------------------------------------------


def merged(old: Any, new: Any) -> Any:
    """`new` over `old`, dictionaries merged key by key at every depth (other values replaced)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return {**old, **{key: merged(old.get(key), value) for key, value in new.items()}}
    return new


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Merge `results` into the JSON file at `path`, keeping every key they do not mention."""
    previous = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps(merged(previous, results), indent=1))


def _numbers(kind: type) -> Callable[[str], list]:
    """An argparse type: "1,2,3" -> [1, 2, 3]."""
    return lambda text: [kind(value) for value in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parts = ("signatures", "quality", "scale", "speedups")
    parser.add_argument("part", nargs="?", default="all", choices=("all", *parts))
    parser.add_argument(
        "--src", type=Path, default=DEFAULT_SRC, help="the benchmark data (default bench/data)"
    )
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK / "dedup")
    parser.add_argument("--docs", type=int, default=None, help="use only the first N documents")
    parser.add_argument("--preset", default="fineweb", choices=sorted(PRESETS), help="for the quality part")
    parser.add_argument(
        "--min-jaccards",
        type=_numbers(float),
        default=[0.0],
        metavar="J,J...",
        help="quality: --min-jaccard settings run besides the job's default (default 0: plain banding)",
    )
    parser.add_argument(
        "--sizes",
        type=_numbers(int),
        default=list(SCALE_SIZES),
        metavar="N,N...",
        help="scale: corpus sizes (default 100000,300000,1000000)",
    )
    parser.add_argument(
        "--speedup-size", type=int, default=100_000, help="speedups: the scale corpus for the Spark parts"
    )
    parser.add_argument("--repeats", type=int, default=2, help="speedups: runs of each way, the best kept")
    parser.add_argument(
        "--table", action="store_true", help="scale: run nothing, print the table of the stored runs"
    )
    args = parser.parse_args()

    docs = load_corpus(args.src, args.work)[: args.docs]
    progress(f"corpus: {len(docs):,} documents under {args.work}")
    results: dict[str, Any] = {}
    for part in parts if args.part == "all" else (args.part,):
        print(f"\n== {part} ==", flush=True)
        if part == "signatures":
            results[part] = signatures(docs, args.work)
        elif part == "speedups":
            results[part] = speedups(docs, args.work, args.speedup_size, args.repeats)
        elif part == "quality":
            results[f"quality_{args.preset}"] = quality(docs, args.preset, args.min_jaccards, args.work)
        else:
            results[part] = scale(docs, args.work, [] if args.table else args.sizes)
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path = args.work / "dedup_results.json"
    write_results(path, results)
    write_results(path, {"crawl_cost": crawl_cost(json.loads(path.read_text()))})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
