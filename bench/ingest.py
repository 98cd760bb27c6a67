"""Benchmark: datatrove's FineWeb pipeline against tokenmill's ingest, on the same WARCs, in one run.

    python bench/ingest.py [--src PATH] [--work DIR] [--pages N] [--copies K]

Input: the 1,053 real pages of `bench/data/extraction`, each written COPIES times (4,212 records by
default), as 4 WARC shards by build_warc.py (built under WORK/warc/ when missing). Measured, in this
order:

1. datatrove 0.10.1, FineWeb example stages and thresholds with languages=["en"], on one core:
   WarcReader -> URLFilter -> Trafilatura -> LanguageFilter -> GopherRepetition -> GopherQuality
   -> C4Quality(filter_no_terminal_punct=False) -> FineWebQuality -> JsonlWriter.
   Its LanguageFilter is pointed at tokenmill's lid.176.ftz (datatrove would download lid.176.bin).
2. tokenmill's `process_unit` on each shard in this process (one core), with the `fineweb` preset and
   again with its language precheck off (the one stage datatrove does not have).
3. `tokenmill ingest --master local[2]` as a subprocess (two cores), with the `fineweb` preset and
   again with the fast config (`--set extract.engine=resiliparse --set language.precheck_chars=2000`:
   the precheck stays on at fineweb's floor, on 2,000 characters instead of 20,000). Each is timed
   twice: the job's own seconds, which start once its Spark session is up (the ratios against
   datatrove use these, as the tokenize bench does), and the subprocess wall with JVM start-up.
4. Filter agreement on the same text (first copies only): every page is extracted once, and the
   identical texts go through datatrove's filter chain and tokenmill's `build_text_filters`, filter
   by filter; and, to separate word splitting from the rules, through tokenmill's filters on spaCy's
   word split.
5. The other intentional differences, each on its own: URL lists, charset decoding, punctuation sets.

Docs/s per core = pages in the WARCs / seconds / cores used. The projected cost of one Common Crawl
crawl (bench/crawl_cost.py's) scales each system's core-seconds per page. Results: a table on stdout and
WORK/ingest_results.json (its "crawl_cost" holds each system's pages and core-seconds). The Spark
job imports tokenmill afresh, so keep the working tree still while the bench runs; the results record
the commit and any uncommitted changes.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import multiprocessing
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import trafilatura
from build_warc import build_warc, is_copy
from crawl_cost import RECORDS_PER_WARC, WARCS, project
from datatrove.data import Document as DatatroveDocument
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
    LanguageFilter,
    URLFilter,
)
from datatrove.pipeline.filters.base_filter import BaseFilter, get_filter_result
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.readers.warc import process_record
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.lid import FT176LID
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION, split_into_words
from tldextract import TLDExtract
from trafilatura.deduplication import LRU_TEST
from warcio.archiveiterator import ArchiveIterator

from tokenmill.pipeline.ingest.charset import decode_html
from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters import TEXT_FILTERS, Filter, build_text_filters
from tokenmill.pipeline.ingest.filters.language import bundled_model_path
from tokenmill.pipeline.ingest.filters.url import URLFilter as TokenmillURLFilter
from tokenmill.pipeline.ingest.unit import IngestJob, process_unit
from tokenmill.pipeline.recipe import load_recipe
from tokenmill.pipeline.text import is_punctuation_char, terminal_punctuation

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO_ROOT / "bench" / "data" / "extraction"
DEFAULT_WORK = REPO_ROOT / "bench" / "work"
SHARDS = 4
COPIES = 4  # 1,053 real pages x 4 = 4,212 records: the scale the targets are set on
STAGES = tuple(filter_class.name for filter_class in TEXT_FILTERS)
FILTER_AGREEMENT_TARGET = 0.98
SPEEDUP_TARGET = 1.5
# tokenmill on Spark after its session is up vs datatrove, docs/s per core (issue 14).
SPARK_TARGETS = {"fineweb preset": 3.5, "resiliparse": 10.0}
# tokenmill's one pre-extraction stage datatrove lacks: lid.176 on the crude visible text of the HTML.
PRECHECK_OFF = "language.skip_extraction_below=0"
# The fast extractor, with the precheck on 2,000 characters of crude text: on 20,000 it cost a page more
# than resiliparse and lid.176 on the extracted text save; on 2,000 it costs about half and still skips
# most pages in no wanted language. In process on these WARCs it keeps the same documents as without
# the precheck (624 of 4,212).
FAST_EXTRACTOR = ["extract.engine=resiliparse", "language.precheck_chars=2000"]

Decisions = list[str | None]  # one entry per filter reached: None = kept, else the drop reason


@dataclass(frozen=True)
class Timing:
    system: str
    docs: int
    seconds: float  # wall
    cores: int
    cpu_seconds: float | None = None  # user + system, of every process the run started

    @property
    def docs_per_core_second(self) -> float:
        return self.docs / self.seconds / self.cores

    @property
    def docs_per_cpu_second(self) -> float | None:
        return self.docs / self.cpu_seconds if self.cpu_seconds else None


RunResult = tuple[list[Timing], set[str]]  # timings (the first is the system's own) and kept ids


@dataclass(frozen=True)
class Page:
    """One WARC response as datatrove's reader sees it, and its text extracted once."""

    id: str
    url: str
    text: str


_STARTED = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _STARTED:6.1f} s] {message}", flush=True)


def environment() -> dict[str, Any]:
    """What was measured: package versions, the tokenmill commit and any uncommitted pipeline changes."""
    packages = [
        "datatrove",
        "trafilatura",
        "resiliparse",
        "spacy",
        "fasttext-numpy2-wheel",
        "warcio",
        "pyspark",
        "numpy",
    ]
    git = ["git", "-C", str(REPO_ROOT)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "pipeline", "jobs"], capture_output=True, text=True
    )
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        **{name: metadata.version(name) for name in packages},
        "tokenmill_commit": head,
        "uncommitted": dirty.stdout.splitlines(),
    }


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# ---------------------------------------------------------------------------------------------------
# Input


def ensure_warcs(src: Path, work: Path, pages: int | None, copies: int) -> tuple[list[Path], int]:
    """The benchmark shards under WORK/warc/, rebuilt when missing or built from other settings."""
    warc_dir = work / "warc"
    manifest_path = warc_dir / "manifest.json"
    wanted = {"src": str(src.resolve()), "pages_limit": pages, "shards": SHARDS, "copies": copies}
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        if {key: manifest.get(key) for key in wanted} == wanted:
            return [warc_dir / name for name in manifest["files"]], manifest["pages"]
    fresh_dir(warc_dir)
    paths, written = build_warc(src, warc_dir, SHARDS, pages, copies)
    manifest_path.write_text(json.dumps({**wanted, "pages": written, "files": [p.name for p in paths]}))
    return paths, written


# ---------------------------------------------------------------------------------------------------
# datatrove, set up offline on tokenmill's language model


class _BundledFT176(FT176LID):
    """datatrove's lid.176 wrapper, loading tokenmill's bundled lid.176.ftz instead of downloading."""

    @property
    def model(self) -> Any:
        if self._model is None:
            import fasttext

            self._model = fasttext.load_model(bundled_model_path())
        return self._model


def datatrove_language_filter() -> LanguageFilter:
    """LanguageFilter with the fineweb preset's languages and threshold, on the bundled model."""
    language = load_recipe("fineweb").section("language")
    language_filter = LanguageFilter(
        languages=language["languages"], language_threshold=language["threshold"]
    )
    language_filter.model = _BundledFT176(language["languages"])
    return language_filter


def datatrove_url_filter() -> URLFilter:
    """URLFilter with its packaged lists, on tldextract's bundled suffix snapshot (no network)."""
    url_filter = URLFilter()
    url_filter.tldextractor = TLDExtract(suffix_list_urls=(), cache_dir=None)
    return url_filter


def datatrove_text_filters() -> list[BaseFilter]:
    """datatrove's filters after extraction, in STAGES order, as in its FineWeb example."""
    return [
        datatrove_language_filter(),
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(filter_no_terminal_punct=False),
        FineWebQualityFilter(),
    ]


def run_datatrove(warc_dir: Path, shards: int, pages: int, out: Path) -> RunResult:
    """The whole datatrove pipeline, one task per shard, one worker; returns its wall time, the same
    less the URL blocklists' loading that every task repeats (4.6 M domains), and the kept ids."""
    fresh_dir(out)
    started = time.perf_counter()
    pipeline = [
        WarcReader(str(warc_dir), glob_pattern="*.warc.gz"),
        datatrove_url_filter(),
        Trafilatura(favour_precision=True, timeout=1),
        *datatrove_text_filters(),
        JsonlWriter(str(out / "kept")),
    ]
    executor = LocalPipelineExecutor(pipeline, tasks=shards, workers=1, logging_dir=str(out / "logs"))
    with (out / "stderr.log").open("w") as log, contextlib.redirect_stderr(log):
        executor.run()
    seconds = time.perf_counter() - started
    kept = set()
    for path in sorted((out / "kept").glob("*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            kept.update(json.loads(line)["id"] for line in handle)
    list_loading_started = time.perf_counter()
    datatrove_url_filter().download_data()
    list_loading = time.perf_counter() - list_loading_started
    timings = [
        Timing("datatrove 0.10.1 (1 worker)", pages, seconds, 1),
        Timing(
            f"datatrove less {shards} x {list_loading:.1f} s URL-list loading",
            pages,
            seconds - shards * list_loading,
            1,
        ),
    ]
    return timings, kept


# ---------------------------------------------------------------------------------------------------
# tokenmill


def kept_ids(root: Path) -> set[str]:
    ids: set[str] = set()
    for path in sorted((root / "documents").glob("*.parquet")):
        ids.update(pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return ids


def run_tokenmill_in_process(
    shards: list[Path], pages: int, root: Path, system: str, overrides: list[str] | None = None
) -> RunResult:
    """process_unit on each shard, one after the other, in this process."""
    fresh_dir(root)
    started = time.perf_counter()
    job = IngestJob(root=str(root), recipe=load_recipe("fineweb", overrides))
    for shard in shards:
        process_unit(str(shard), job)
    seconds = time.perf_counter() - started
    return [Timing(system, pages, seconds, 1)], kept_ids(root)


def run_tokenmill_spark(
    shards: list[Path], pages: int, root: Path, preset: str, overrides: list[str] | None = None
) -> RunResult:
    """`tokenmill ingest --master local[2]`: the job's own seconds, which start once its Spark session
    is up (the first timing), the wall time with JVM start-up, and the tasks' core-seconds alone. No
    CPU time: the JVM that pyspark launches is not waited for by the `tokenmill` process, so its CPU
    time never reaches us."""
    fresh_dir(root)
    command = [str(Path(sys.executable).with_name("tokenmill")), "ingest", *map(str, shards)]
    command += ["-o", str(root), "--master", "local[2]"]
    for override in overrides or []:
        command += ["--set", override]
    log_path = root.parent / f"{root.name}.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    if returncode != 0:
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise RuntimeError(f"tokenmill ingest exited with {returncode}; {log_path} ends:\n{tail}")
    summary = json.loads((root / "stats" / "ingest.json").read_text())
    timings = [
        Timing(f"tokenmill Spark local[2] {preset}, after session up", pages, summary["seconds"], 2),
        Timing(f"tokenmill Spark local[2] {preset}, wall incl. start-up", pages, wall, 2),
        Timing(f"tokenmill Spark {preset}, tasks only (core-seconds)", pages, summary["task_seconds"], 1),
    ]
    return timings, kept_ids(root)


def spark_ratios(spark_timings: list[Timing], reference: Timing, target: float) -> dict[str, float]:
    """A Spark run against datatrove, docs/s per core: after its session is up (what the target is
    checked on) and with JVM start-up."""
    after_session_up, wall = spark_timings[0], spark_timings[1]
    return {
        "after_session_up": after_session_up.docs_per_core_second / reference.docs_per_core_second,
        "wall": wall.docs_per_core_second / reference.docs_per_core_second,
        "target": target,
    }


def crawl_cost(system: str, timing: Timing, kept: set[str]) -> dict[str, Any]:
    """One row for bench/crawl_cost.py: the pages that entered, core-seconds used, documents kept."""
    return {
        "stage": "ingest",
        "system": system,
        "records": timing.docs,
        "core_seconds": round(timing.seconds * timing.cores, 3),
        "kept": len(kept),
    }


def measure(run: Callable[..., RunResult], *args: Any) -> RunResult:
    """Run one system in a forked child, and add to its first timing the CPU seconds used by the child
    and every process it started (reaped when they end): on a shared machine, CPU time moves far
    less with the load of others than wall time does."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = context.Process(target=_run_and_send, args=(sender, run, args))
    child.start()
    sender.close()
    outcome, payload = receiver.recv()
    child.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if outcome == "error":
        raise RuntimeError(f"{run.__name__} failed:\n{payload}")
    timings, kept = payload
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return [replace(timings[0], cpu_seconds=cpu), *timings[1:]], kept


def _run_and_send(sender: Connection, run: Callable[..., RunResult], args: tuple[Any, ...]) -> None:
    try:
        sender.send(("ok", run(*args)))
    except BaseException:
        sender.send(("error", traceback.format_exc()))


# ---------------------------------------------------------------------------------------------------
# Filter agreement on the same text


def first_copies(records: Iterable[Any]) -> Iterator[Any]:
    """The warcio records that are not a page's second or later copy."""
    for record in records:
        if not is_copy(record.rec_headers.get_header("WARC-Target-URI") or ""):
            yield record


def extract_pages(shards: list[Path]) -> list[Page]:
    """Every HTML response (first copies), decoded as datatrove's reader does, extracted once with
    FineWeb's settings.
    trafilatura's duplicate cache is emptied before each page, so a text never depends on the pages
    before it (`trafilatura.meta.reset_caches` would also do it, at twice the cost per page)."""
    pages = []
    for shard in shards:
        with shard.open("rb") as handle:
            for record in first_copies(ArchiveIterator(handle)):
                decoded = process_record(record)
                if decoded is None:
                    continue
                LRU_TEST.clear()
                text = trafilatura.extract(
                    decoded["text"], favor_precision=True, include_comments=False, deduplicate=True
                )
                pages.append(Page(decoded["id"], decoded["url"], text or ""))
    return pages


def run_chain(
    pages: list[Page], make_doc: Callable[[Page], Any], steps: list[Callable[[Any], str | None]]
) -> tuple[dict[str, Decisions], float]:
    """Each page's decisions through the steps, up to its first drop; and the seconds it all took,
    after one untimed warm-up document (spaCy and the language model load on first use)."""
    if pages:
        for step in steps:
            step(make_doc(pages[0]))
    outcomes: dict[str, Decisions] = {}
    started = time.perf_counter()
    for page in pages:
        doc = make_doc(page)
        decisions: Decisions = []
        for step in steps:
            decisions.append(step(doc))
            if decisions[-1] is not None:
                break
        outcomes[page.id] = decisions
    return outcomes, time.perf_counter() - started


def datatrove_step(text_filter: BaseFilter) -> Callable[[DatatroveDocument], str | None]:
    """A datatrove filter as a step: None to keep, else its drop reason."""

    def step(doc: DatatroveDocument) -> str | None:
        keep, reason = get_filter_result(text_filter.filter(doc))
        return None if keep else reason or "drop"

    return step


def datatrove_doc(page: Page) -> DatatroveDocument:
    return DatatroveDocument(text=page.text, id=page.id, metadata={"url": page.url})


def tokenmill_doc(page: Page) -> Document:
    return Document(id=page.id, text=page.text, url=page.url, date="", file_path="")


def tokenmill_doc_with_spacy_words(page: Page) -> Document:
    """A diagnostic: the document carries datatrove's spaCy word split in place of tokenmill's own
    (until C4 rewrites the text), so the two chains then differ only in their rules."""
    words = split_into_words(page.text, "en")
    return Document(id=page.id, text=page.text, url=page.url, date="", file_path="", _words=words)


def tokenmill_text_filters() -> list[Filter]:
    filters = build_text_filters(load_recipe("fineweb"))
    if tuple(f.name for f in filters) != STAGES:
        raise RuntimeError(f"tokenmill's text filters are {[f.name for f in filters]}, expected {STAGES}")
    return filters


def first_drop(decisions: Decisions) -> str:
    if not decisions or decisions[-1] is None:
        return "kept"
    return f"{STAGES[len(decisions) - 1]}:{decisions[-1]}"


def kept_of(outcomes: dict[str, Decisions]) -> set[str]:
    return {doc_id for doc_id, decisions in outcomes.items() if first_drop(decisions) == "kept"}


def per_filter_agreement(
    reference: dict[str, Decisions], candidate: dict[str, Decisions]
) -> dict[str, dict[str, float]]:
    """For each filter, over the docs both chains reached it: how often both keep or both drop."""
    agreement = {}
    for index, stage in enumerate(STAGES):
        both = [i for i in reference if len(reference[i]) > index and len(candidate[i]) > index]
        same = sum((reference[i][index] is None) == (candidate[i][index] is None) for i in both)
        agreement[stage] = {"docs": len(both), "agreement": same / len(both) if both else 1.0}
    return agreement


def stage_disagreements(reference: dict[str, Decisions], candidate: dict[str, Decisions]) -> Counter[str]:
    """(datatrove first drop, tokenmill first drop) for docs whose outcome differs in stage."""
    pairs: Counter[str] = Counter()
    for doc_id, decisions in reference.items():
        ours, theirs = first_drop(candidate[doc_id]), first_drop(decisions)
        if ours.partition(":")[0] != theirs.partition(":")[0]:
            pairs[f"{theirs}  ->  {ours}"] += 1
    return pairs


# ---------------------------------------------------------------------------------------------------
# Intentional differences, measured on this input


def url_filter_differences(pages: list[Page]) -> dict[str, Any]:
    """URLs each URL filter blocks (datatrove's UT1-derived lists vs tokenmill's small bundled ones)."""
    theirs, ours = datatrove_url_filter(), TokenmillURLFilter.from_section(_enabled_off("url"))
    blocked_theirs = {p.url for p in pages if get_filter_result(theirs.filter(datatrove_doc(p)))[0] is False}
    blocked_ours = {p.url for p in pages if ours(tokenmill_doc(p)) is not None}
    return {
        "blocked_by_datatrove": len(blocked_theirs),
        "blocked_by_tokenmill": len(blocked_ours),
        "only_datatrove": sorted(blocked_theirs - blocked_ours),
        "only_tokenmill": sorted(blocked_ours - blocked_theirs),
    }


def _enabled_off(section_name: str) -> dict[str, Any]:
    section = load_recipe("fineweb").section(section_name)
    section.pop("enabled", None)
    return section


class _ReplayRecord:
    """A warcio record whose payload was already read, so datatrove's process_record can read it again."""

    def __init__(self, record: Any, body: bytes):
        self.rec_type, self.rec_headers, self._body = record.rec_type, record.rec_headers, body

    def content_stream(self) -> io.BytesIO:
        return io.BytesIO(self._body)


def decoding_differences(shards: list[Path]) -> dict[str, Any]:
    """Pages whose HTML string differs between datatrove's UTF-8-then-cchardet decoding and
    tokenmill's HTTP charset -> meta charset -> detection."""
    differ, total = [], 0
    for shard in shards:
        with shard.open("rb") as handle:
            for record in first_copies(ArchiveIterator(handle)):
                if record.rec_type != "response":
                    continue
                body = record.content_stream().read()
                theirs = process_record(_ReplayRecord(record, body))
                ours = decode_html(body, record.http_headers.get_header("Content-Type"))
                total += 1
                if (theirs and theirs["text"]) != (ours and ours[0]):
                    differ.append(record.rec_headers.get_header("WARC-Target-URI"))
    return {"pages": total, "decoded_differently": len(differ), "urls": differ}


def punctuation_differences(texts: Iterable[str]) -> dict[str, Any]:
    """datatrove's TERMINAL_PUNCTUATION vs tokenmill's set (with how often each extra character ends a
    line here), and PUNCTUATION_SET vs is_punctuation_char on every non-whitespace character in the
    extracted texts (with how often it occurs); whitespace never sits inside a word in either split."""
    ours_terminal = set(terminal_punctuation())
    occurrences: Counter[str] = Counter()
    line_ends: Counter[str] = Counter()
    for text in texts:
        occurrences.update(text)
        line_ends.update(line[-1] for line in text.split("\n") if line)
    classified_differently = {
        char: occurrences[char]
        for char in occurrences
        if not char.isspace() and (char in PUNCTUATION_SET) != is_punctuation_char(char)
    }

    def described(chars: Iterable[str], counts: Counter[str]) -> list[str]:
        return [f"U+{ord(c):04X} {c!r} x{counts[c]}" for c in sorted(chars, key=lambda c: -counts[c])]

    only_theirs, only_ours = TERMINAL_PUNCTUATION - ours_terminal, ours_terminal - TERMINAL_PUNCTUATION
    return {
        "terminal_sets_equal": ours_terminal == TERMINAL_PUNCTUATION,
        "terminal_only_datatrove": described(only_theirs, line_ends),
        "terminal_only_tokenmill": described(only_ours, line_ends),
        "punctuation_classified_differently": described(classified_differently, occurrences),
        "punctuation_datatrove_only": sum(1 for c in classified_differently if c in PUNCTUATION_SET),
        "punctuation_tokenmill_only": sum(1 for c in classified_differently if c not in PUNCTUATION_SET),
    }


# ---------------------------------------------------------------------------------------------------
# Report


def verdict(value: float, target: float) -> str:
    return "PASS" if value >= target else "MISS"


def print_report(results: dict[str, Any]) -> None:
    timings = [Timing(**t) for t in results["timings"]]
    reference, reference_cpu = timings[0].docs_per_core_second, timings[0].docs_per_cpu_second
    print(
        f"\n{'system':<58}{'docs':>6}{'wall s':>8}{'cores':>6}{'docs/s/core':>12}{'ratio':>7}"
        f"{'CPU s':>8}{'docs/CPU-s':>11}{'ratio':>7}"
    )
    for t in timings:
        rate, cpu_rate = t.docs_per_core_second, t.docs_per_cpu_second
        row = f"{t.system:<58}{t.docs:>6}{t.seconds:>8.1f}{t.cores:>6}{rate:>12.2f}{rate / reference:>6.2f}x"
        if cpu_rate is not None:
            row += f"{t.cpu_seconds:>8.1f}{cpu_rate:>11.2f}{cpu_rate / reference_cpu:>6.2f}x"
        print(row)

    speedup = results["speedup_in_process"]
    filter_jaccard = results["same_text"]["jaccard"]
    print(
        f"\nspeed, tokenmill in-process vs datatrove, docs/s per core: {speedup:.2f}x "
        f"(target >= {SPEEDUP_TARGET}x) {verdict(speedup, SPEEDUP_TARGET)}; "
        f"per CPU second: {results['speedup_in_process_cpu']:.2f}x"
    )
    for preset, ratios in results["spark_vs_datatrove"].items():
        after, target = ratios["after_session_up"], ratios["target"]
        print(
            f"speed, tokenmill Spark local[2] ({preset}) vs datatrove, docs/s per core after the session "
            f"is up: {after:.2f}x (target >= {target:g}x) {verdict(after, target)}; "
            f"with JVM start-up: {ratios['wall']:.2f}x"
        )
    crawl_records = WARCS * RECORDS_PER_WARC
    print(f"\nprojected cost of one crawl ({crawl_records:,} records), ingest:")
    print(f"  {'system':<34}{'records':>8}{'core-s':>9}{'core-s/1000 rec':>17}{'core-hours/crawl':>18}")
    for row in project(results["crawl_cost"], {"ingest": crawl_records}):
        print(
            f"  {row['system']:<34}{row['records']:>8}{row['core_seconds']:>9.1f}"
            f"{row['core_seconds_per_1000']:>17.1f}{row['crawl_core_hours']:>18,}"
        )
    e2e = results["end_to_end"]
    print(
        f"end-to-end Jaccard of kept ids: {e2e['jaccard']:.4f}  (datatrove {e2e['kept_datatrove']}, "
        f"tokenmill {e2e['kept_tokenmill']}, both {e2e['kept_both']}; "
        f"Spark vs in-process {e2e['jaccard_spark_vs_in_process']:.4f}; "
        f"resiliparse vs trafilatura on Spark {e2e['jaccard_resiliparse_vs_trafilatura']:.4f})"
    )
    same = results["same_text"]
    print(
        f"filter Jaccard on the same text: {filter_jaccard:.4f} "
        f"(target >= {FILTER_AGREEMENT_TARGET}) {verdict(filter_jaccard, FILTER_AGREEMENT_TARGET)}  "
        f"({same['pages_with_text']} texts; kept: datatrove {same['kept_datatrove']}, "
        f"tokenmill {same['kept_tokenmill']}, both {same['kept_both']})"
    )
    print(
        f"filter chains alone on those texts: datatrove {same['datatrove_docs_per_s']:.0f} docs/s, "
        f"tokenmill {same['tokenmill_docs_per_s']:.0f} docs/s"
    )

    print("\nper-filter agreement (docs both chains reached):")
    for stage, row in same["per_filter"].items():
        print(f"  {stage:<20}{row['agreement']:>8.4f}  of {row['docs']}")
    print("top first-drop disagreements (datatrove -> tokenmill):")
    for pair, count in same["disagreements"][:10]:
        print(f"  {count:>4}  {pair}")

    spacy_words = results["same_text_tokenmill_rules_on_spacy_words"]
    per_filter = ", ".join(f"{k} {v['agreement']:.4f}" for k, v in spacy_words["per_filter"].items())
    print(
        f"\ndiagnostic, tokenmill's rules on spaCy's word split: Jaccard {spacy_words['jaccard']:.4f}\n"
        f"  per filter: {per_filter}"
    )
    for pair, count in spacy_words["disagreements"][:5]:
        print(f"  {count:>4}  {pair}")

    split = results["end_to_end_split"]
    print("\nwhere end-to-end differs (Jaccard of kept ids):")
    for name, value in split.items():
        print(f"  {name:<54}{value:.4f}")
    urls, decoding, punct = results["url_filter"], results["decoding"], results["punctuation"]
    print(
        f"URL filter: datatrove blocks {urls['blocked_by_datatrove']}, "
        f"tokenmill {urls['blocked_by_tokenmill']} (only datatrove {len(urls['only_datatrove'])}, "
        f"only tokenmill {len(urls['only_tokenmill'])})"
    )
    print(f"decoding: {decoding['decoded_differently']} of {decoding['pages']} pages decode differently")
    print(
        f"TERMINAL_PUNCTUATION == terminal_punctuation(): {punct['terminal_sets_equal']} "
        f"(only datatrove: {punct['terminal_only_datatrove']}; "
        f"only tokenmill: {punct['terminal_only_tokenmill']}; xN = lines ending with it here)"
    )
    print(
        f"PUNCTUATION_SET vs is_punctuation_char on chars in the texts: "
        f"{len(punct['punctuation_classified_differently'])} differ "
        f"({punct['punctuation_datatrove_only']} punctuation only for datatrove, "
        f"{punct['punctuation_tokenmill_only']} only for tokenmill): "
        f"{punct['punctuation_classified_differently'][:20]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--src", type=Path, default=DEFAULT_SRC, help=f"extraction data (default {DEFAULT_SRC})"
    )
    parser.add_argument(
        "--work", type=Path, default=DEFAULT_WORK, help=f"work directory (default {DEFAULT_WORK})"
    )
    parser.add_argument("--pages", type=int, default=None, help="use only the first N pages (default all)")
    parser.add_argument(
        "--copies", type=int, default=COPIES, help=f"write every page K times (default {COPIES})"
    )
    args = parser.parse_args()
    work = args.work.resolve()

    measured_on = environment()
    shards, n_pages = ensure_warcs(args.src, work, args.pages, args.copies)
    print(
        f"input: {n_pages} records ({args.copies} copies of each page) in {len(shards)} WARC shards "
        f"under {shards[0].parent}",
        flush=True,
    )

    progress("running datatrove ...")
    datatrove_timings, kept_datatrove = measure(
        run_datatrove, shards[0].parent, len(shards), n_pages, work / "datatrove"
    )
    progress("running tokenmill in-process ...")
    in_process_timings, kept_tokenmill = measure(
        run_tokenmill_in_process, shards, n_pages, work / "tokenmill", "tokenmill in-process"
    )
    progress("running tokenmill in-process without the language precheck ...")
    no_precheck_timings, kept_no_precheck = measure(
        run_tokenmill_in_process,
        shards,
        n_pages,
        work / "tokenmill-no-precheck",
        "tokenmill in-process, precheck off",
        [PRECHECK_OFF],
    )
    progress("running tokenmill on Spark local[2] ...")
    spark_timings, kept_spark = run_tokenmill_spark(shards, n_pages, work / "tokenmill-spark", "fineweb")
    progress("running tokenmill on Spark local[2] with the fast extractor ...")
    fast_timings, kept_fast = run_tokenmill_spark(
        shards, n_pages, work / "tokenmill-spark-resiliparse", "resiliparse", FAST_EXTRACTOR
    )

    progress("extracting each page once for the same-text comparison ...")
    pages = extract_pages(shards)
    first_copy_ids = {page.id for page in pages}
    with_text = [page for page in pages if page.text]
    progress(f"both filter chains on the {len(with_text)} non-empty texts ...")
    datatrove_outcomes, datatrove_seconds = run_chain(
        with_text, datatrove_doc, [datatrove_step(f) for f in datatrove_text_filters()]
    )
    tokenmill_outcomes, tokenmill_seconds = run_chain(with_text, tokenmill_doc, tokenmill_text_filters())
    spacy_split_outcomes, _ = run_chain(with_text, tokenmill_doc_with_spacy_words, tokenmill_text_filters())
    same_datatrove, same_tokenmill = kept_of(datatrove_outcomes), kept_of(tokenmill_outcomes)
    progress("measuring the URL-list, decoding and punctuation differences ...")
    url_filter, decoding = url_filter_differences(pages), decoding_differences(shards)
    punctuation = punctuation_differences(page.text for page in with_text)

    timings = [
        *datatrove_timings,
        *in_process_timings,
        *no_precheck_timings,
        *spark_timings,
        *fast_timings,
    ]
    in_process, reference = in_process_timings[0], datatrove_timings[0]
    results = {
        "environment": measured_on,
        "timings": [asdict(t) for t in timings],
        "docs_per_core_second": {t.system: t.docs_per_core_second for t in timings},
        "speedup_in_process": in_process.docs_per_core_second / reference.docs_per_core_second,
        "speedup_in_process_cpu": in_process.docs_per_cpu_second / reference.docs_per_cpu_second,
        "spark_vs_datatrove": {
            preset: spark_ratios(run_timings, reference, SPARK_TARGETS[preset])
            for preset, run_timings in (("fineweb preset", spark_timings), ("resiliparse", fast_timings))
        },
        "crawl_cost": [
            crawl_cost("tokenmill (fineweb preset)", spark_timings[0], kept_spark),
            crawl_cost("tokenmill (resiliparse)", fast_timings[0], kept_fast),
            crawl_cost("datatrove 0.10.1", reference, kept_datatrove),
        ],
        "end_to_end": {
            "jaccard": jaccard(kept_datatrove, kept_tokenmill),
            "kept_datatrove": len(kept_datatrove),
            "kept_tokenmill": len(kept_tokenmill),
            "kept_both": len(kept_datatrove & kept_tokenmill),
            "jaccard_spark_vs_in_process": jaccard(kept_spark, kept_tokenmill),
            "jaccard_resiliparse_vs_trafilatura": jaccard(kept_fast, kept_spark),
            "only_datatrove": sorted(kept_datatrove - kept_tokenmill),
            "only_tokenmill": sorted(kept_tokenmill - kept_datatrove),
        },
        "same_text": {
            "pages_with_text": len(with_text),
            "jaccard": jaccard(same_datatrove, same_tokenmill),
            "kept_datatrove": len(same_datatrove),
            "kept_tokenmill": len(same_tokenmill),
            "kept_both": len(same_datatrove & same_tokenmill),
            "datatrove_docs_per_s": len(with_text) / datatrove_seconds,
            "tokenmill_docs_per_s": len(with_text) / tokenmill_seconds,
            "per_filter": per_filter_agreement(datatrove_outcomes, tokenmill_outcomes),
            "disagreements": stage_disagreements(datatrove_outcomes, tokenmill_outcomes).most_common(),
            "first_drop": {
                doc_id: [first_drop(datatrove_outcomes[doc_id]), first_drop(tokenmill_outcomes[doc_id])]
                for doc_id in datatrove_outcomes
            },
        },
        "same_text_tokenmill_rules_on_spacy_words": {
            "jaccard": jaccard(same_datatrove, kept_of(spacy_split_outcomes)),
            "per_filter": per_filter_agreement(datatrove_outcomes, spacy_split_outcomes),
            "disagreements": stage_disagreements(datatrove_outcomes, spacy_split_outcomes).most_common(),
        },
        "end_to_end_split": {
            "tokenmill precheck on vs off (end to end)": jaccard(kept_tokenmill, kept_no_precheck),
            "datatrove vs tokenmill precheck off (end to end)": jaccard(kept_datatrove, kept_no_precheck),
            "datatrove end to end vs its chain on the same text": jaccard(
                kept_datatrove & first_copy_ids, same_datatrove
            ),
            "tokenmill end to end vs its chain on the same text": jaccard(
                kept_tokenmill & first_copy_ids, same_tokenmill
            ),
            "datatrove vs tokenmill chains on the same text": jaccard(same_datatrove, same_tokenmill),
        },
        "url_filter": url_filter,
        "decoding": decoding,
        "punctuation": punctuation,
    }
    measured_on["load_average_at_end"] = os.getloadavg()
    (work / "ingest_results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print_report(results)
    print(f"\nresults: {work / 'ingest_results.json'}")


if __name__ == "__main__":
    main()
