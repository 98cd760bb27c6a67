"""The text filters and the precheck's `visible_text` against a committed version of themselves: the
same decisions, signals, rewritten texts and crude texts on every real bench page, and the CPU each
costs per page, both measured in this run.

    python bench/filters_equal.py [--anchor REV] [--src DIR] [--repeats N]

The bench pages (bench/data/extraction, as bench/build_warc.py reads them) are decoded as ingest
decodes them and extracted once with the fineweb preset's trafilatura settings and once with
Resiliparse; the texts are cached under bench/work/filters_equal/. The anchor is the code at git
revision REV (default: the last commit before the filters' speedups): pipeline/text.py,
pipeline/ingest/document.py, pipeline/ingest/extract.py and pipeline/ingest/filters/*.py are loaded
from `git show REV:path` as a private copy of those modules, so both versions run side by side, page
by page, in one process.

Every filter of the fineweb recipe runs on every document, in order, whatever the earlier filters
decided (so each one sees every text), once with `all_signals` and once as ingest runs them (stopping
at a filter's first broken rule); CPU time is the minimum over the repeats of each filter's total.
Exits 1 on any difference. Writes bench/work/filters_equal.json.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from build_warc import meta_charset, read_pages

import tokenmill.pipeline.ingest.document as current_document
import tokenmill.pipeline.ingest.extract as current_extract
import tokenmill.pipeline.ingest.filters as current_filters
import tokenmill.pipeline.text as current_text
from tokenmill.pipeline.ingest.charset import decode_html
from tokenmill.pipeline.recipe import load_recipe

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO_ROOT / "bench" / "data" / "extraction"
WORK = REPO_ROOT / "bench" / "work"
ENGINES = ("trafilatura", "resiliparse")
BEFORE_SPEEDUPS = "1d94b0697e90070cd802b1e0d27a6df062733422"
PRECHECK_CHARS = 20_000  # what the language precheck passes to visible_text
VISIBLE_TEXT_LIMITS = (PRECHECK_CHARS, 100, 10**9)
# The modules that make up the filters, in import order, and their files.
ANCHORED = {
    "tokenmill.pipeline.text": "pipeline/text.py",
    "tokenmill.pipeline.ingest.document": "pipeline/ingest/document.py",
    "tokenmill.pipeline.ingest.extract": "pipeline/ingest/extract.py",
    "tokenmill.pipeline.ingest.filters.rules": "pipeline/ingest/filters/rules.py",
    "tokenmill.pipeline.ingest.filters.url": "pipeline/ingest/filters/url.py",
    "tokenmill.pipeline.ingest.filters.language": "pipeline/ingest/filters/language.py",
    "tokenmill.pipeline.ingest.filters.gopher_repetition": "pipeline/ingest/filters/gopher_repetition.py",
    "tokenmill.pipeline.ingest.filters.gopher_quality": "pipeline/ingest/filters/gopher_quality.py",
    "tokenmill.pipeline.ingest.filters.c4": "pipeline/ingest/filters/c4.py",
    "tokenmill.pipeline.ingest.filters.fineweb_quality": "pipeline/ingest/filters/fineweb_quality.py",
    "tokenmill.pipeline.ingest.filters": "pipeline/ingest/filters/__init__.py",
}


class Version:
    """One version of the modules the filters are made of."""

    def __init__(self, label: str, modules: dict[str, ModuleType]):
        self.label = label
        self.text = modules["tokenmill.pipeline.text"]
        self.document = modules["tokenmill.pipeline.ingest.document"]
        self.extract = modules["tokenmill.pipeline.ingest.extract"]
        self.filters = modules["tokenmill.pipeline.ingest.filters"]


@contextmanager
def swapped_modules(names: list[str]) -> Iterator[None]:
    """Hide the named modules from the import system inside the block and put them back after it, so
    that modules executed inside bind to each other rather than to the installed ones."""
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    try:
        yield
    finally:
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def load_anchor(rev: str) -> Version:
    """The modules as committed at `rev`, executed from their source under their own names. Each gets
    the installed module's spec and paths, so that package resources (the bundled model, the lists)
    resolve as usual; all are registered before any runs, so their imports find each other."""
    installed_modules = {name: importlib.import_module(name) for name in ANCHORED}
    modules: dict[str, ModuleType] = {}
    with swapped_modules(list(ANCHORED)):
        for name, installed in installed_modules.items():
            module = modules[name] = ModuleType(name)
            module.__spec__, module.__file__ = installed.__spec__, installed.__file__
            if hasattr(installed, "__path__"):
                module.__path__ = installed.__path__
        sys.modules.update(modules)
        for name, path in ANCHORED.items():
            source = subprocess.run(
                ["git", "show", f"{rev}:{path}"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
            ).stdout
            exec(compile(source, f"{rev}:{path}", "exec"), modules[name].__dict__)
    return Version(f"anchor {rev[:10]}", modules)


def current_version() -> Version:
    return Version(
        "current",
        {
            "tokenmill.pipeline.text": current_text,
            "tokenmill.pipeline.ingest.document": current_document,
            "tokenmill.pipeline.ingest.extract": current_extract,
            "tokenmill.pipeline.ingest.filters": current_filters,
        },
    )


def decoded_pages(src: Path) -> list[tuple[str, str]]:
    """(url, html) of every bench page that decodes, as ingest decodes the WARC records."""
    pages = []
    for page in read_pages(src):
        charset = meta_charset(page.html)
        decoded = decode_html(page.html, f"text/html; charset={charset}" if charset else "text/html")
        if decoded is not None:
            pages.append((page.url, decoded[0]))
    return pages


def extracted_texts(pages: list[tuple[str, str]], engine: str, cache: Path) -> list[tuple[str, str]]:
    """(url, text) of the pages the engine extracts a text from, with the fineweb preset's settings;
    cached, as extraction is most of this bench's time."""
    if cache.exists():
        return [tuple(pair) for pair in json.loads(gzip.decompress(cache.read_bytes()))]
    section = load_recipe("fineweb", [f"extract.engine={engine}"]).section("extract")
    extractor = current_extract.Extractor(current_extract.ExtractSettings.from_section(section))
    texts = []
    try:
        for url, html in pages:
            text, status = extractor(html)
            if status == "ok" and text:
                texts.append((url, text))
    finally:
        extractor.close()
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(gzip.compress(json.dumps(texts).encode()))
    return texts


Outcome = list[tuple[str, str | None, dict[str, float], str]]  # per filter: name, reason, signals, text


def run_filters(version: Version, filters: list[Any], url: str, text: str, cpu: dict[str, int]) -> Outcome:
    """Every filter on one document in order, whatever the earlier ones decided; adds each filter's
    CPU nanoseconds to `cpu`."""
    doc = version.document.Document(id=url, text=text, url=url, date="", file_path="")
    outcome: Outcome = []
    for text_filter in filters:
        before = dict(doc.signals)
        started = time.process_time_ns()
        reason = text_filter(doc)
        cpu[text_filter.name] = cpu.get(text_filter.name, 0) + time.process_time_ns() - started
        signals = {key: value for key, value in doc.signals.items() if before.get(key) != value}
        if text_filter.name == "language":
            signals = {"language": doc.language, "language_score": doc.language_score}
        outcome.append((text_filter.name, reason, signals, doc.text))
    return outcome


def compare_filters(
    versions: tuple[Version, Version], texts: list[tuple[str, str]], repeats: int
) -> tuple[dict[str, Any], list[str]]:
    """Per mode: each version's CPU ms per document per filter, and every difference found."""
    recipe = load_recipe("fineweb")
    results: dict[str, Any] = {}
    differences: list[str] = []
    for mode, all_signals in (("all_signals", True), ("as ingest runs them", False)):
        chains = [version.filters.build_text_filters(recipe, all_signals=all_signals) for version in versions]
        best: list[dict[str, int]] = [{}, {}]
        for repeat in range(repeats):
            totals: list[dict[str, int]] = [{}, {}]
            for url, text in texts:
                # Alternate which version goes first, so neither always runs on a warmer cache.
                order = (0, 1) if repeat % 2 == 0 else (1, 0)
                outcomes: list[Outcome] = [[], []]
                for index in order:
                    outcomes[index] = run_filters(versions[index], chains[index], url, text, totals[index])
                if repeat == 0 and outcomes[0] != outcomes[1]:
                    differences.append(f"{mode}: {url}: {first_difference(*outcomes)}")
            for index in (0, 1):
                for name, nanoseconds in totals[index].items():
                    best[index][name] = min(best[index].get(name, nanoseconds), nanoseconds)
        results[mode] = {
            version.label: {name: ns / 1e6 / len(texts) for name, ns in best[index].items()}
            for index, version in enumerate(versions)
        }
    return results, differences


def first_difference(anchor: Outcome, current: Outcome) -> str:
    for (name, *left), (_, *right) in zip(anchor, current, strict=True):
        if left != right:
            return f"{name}: anchor {left[:2]} vs current {right[:2]}"
    return "?"


def cpu_ms(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """The least CPU milliseconds of `repeats` calls, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.process_time_ns()
        result = function()
        best = min(best, (time.process_time_ns() - started) / 1e6)
    return best, result


def compare_visible_text(
    versions: tuple[Version, Version], pages: list[tuple[str, str]], repeats: int
) -> tuple[dict[str, float], list[str]]:
    """CPU ms per page of each version's visible_text at the precheck's limit, and every page and limit
    where the outputs differ."""
    differences = [
        f"visible_text({limit}): {url}"
        for url, html in pages
        for limit in VISIBLE_TEXT_LIMITS
        if versions[0].extract.visible_text(html, limit) != versions[1].extract.visible_text(html, limit)
    ]
    timings = {}
    for version in versions:
        function = version.extract.visible_text
        ms, _ = cpu_ms(
            lambda function=function: [function(html, PRECHECK_CHARS) for _, html in pages], repeats
        )
        timings[version.label] = ms / len(pages)
    return timings, differences


def compare_terminal_punctuation(versions: tuple[Version, Version]) -> tuple[dict[str, float], list[str]]:
    """CPU ms of each version's uncached terminal_punctuation build; a difference if the tuples differ."""
    timings, built = {}, []
    for version in versions:
        ms, chars = cpu_ms(version.text.terminal_punctuation.__wrapped__, 3)
        timings[version.label] = ms
        built.append(chars)
    return timings, [] if built[0] == built[1] else ["terminal_punctuation differs"]


def print_table(title: str, timings: dict[str, dict[str, float]]) -> None:
    anchor, current = timings.values()
    print(f"\n{title}: CPU ms per document")
    print(f"  {'filter':<20} {'anchor':>8} {'current':>8} {'speedup':>8}")
    for name in [*anchor, "total"]:
        before = anchor.get(name, sum(anchor.values()))
        after = current.get(name, sum(current.values()))
        print(f"  {name:<20} {before:8.3f} {after:8.3f} {before / after if after else 0:7.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--anchor", default=BEFORE_SPEEDUPS, help="git revision of the anchor")
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC, help="the extraction tarballs' directory")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats; the least is kept")
    args = parser.parse_args()

    versions = (load_anchor(args.anchor), current_version())
    pages = decoded_pages(args.src)
    results: dict[str, Any] = {"anchor": args.anchor, "pages": len(pages)}
    differences: list[str] = []

    timings, found = compare_terminal_punctuation(versions)
    results["terminal_punctuation_ms"], differences = timings, differences + found
    print("terminal_punctuation build, CPU ms: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))

    timings, found = compare_visible_text(versions, pages, args.repeats)
    results["visible_text_ms_per_page"], differences = timings, differences + found
    print(
        f"visible_text on {len(pages)} pages x {len(VISIBLE_TEXT_LIMITS)} limits, {len(found)} differences; "
        "CPU ms per page: " + ", ".join(f"{k} {v:.3f}" for k, v in timings.items())
    )

    for engine in ENGINES:
        texts = extracted_texts(pages, engine, WORK / "filters_equal" / f"{engine}.json.gz")
        timings, found = compare_filters(versions, texts, args.repeats)
        results[engine] = {"documents": len(texts), "differences": len(found), "cpu_ms_per_doc": timings}
        differences += found
        print(f"\n{engine}: {len(texts)} documents, {len(found)} differences")
        for mode, per_version in timings.items():
            print_table(f"{engine}, {mode}", per_version)

    results["differences"] = differences
    (WORK / "filters_equal.json").write_text(json.dumps(results, indent=2))
    for difference in differences[:20]:
        print("DIFFERENCE", difference)
    print(f"\n{len(differences)} differences; results in {WORK / 'filters_equal.json'}")
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
