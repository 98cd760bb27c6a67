"""Benchmark: extraction quality and speed of the two `extract.engine`s, on the same real pages, in one run.

    python bench/extraction.py [--src bench/data/extraction] [--work bench/work] [--pages N]

Input: the two tarballs of `bench/data/extraction`, read in place. Every engine sees the same decoded
HTML (tokenmill's charset decoding), one page at a time, the engines taking turns page by page so that
load from elsewhere on the machine falls on all of them alike. Engines:

* trafilatura as ingest runs it with the `fineweb` preset (child process, 1 s CPU bound);
* resiliparse as ingest runs it with `--set extract.engine=resiliparse` (the same bounded child);
* resiliparse called in this process, which shows what the bound's round trip costs, and again with
  list bullets on, the one option whose choice this bench settles;
* trafilatura in its own evaluation's settings (no favor_precision, no deduplication; a 60 s bound),
  the anchor that shows this harness reproduces trafilatura's published score (F1 0.919, P 0.900,
  R 0.940 for trafilatura 2.3.1 on these 884 pages).

Measured:

1. trafilatura's evaluation (`trafilatura_eval.tar.xz`, the entries of `evaldata.json` whose HTML is
   present): a "with" snippet found in the text is a true positive, one missed a false negative; a
   "without" snippet found is a false positive. Precision and recall over all snippets of all pages.
2. The Article Extraction Benchmark's measure on readability's test pages (`expected.html`, its tags
   stripped, is the gold): per page, the multisets of 4-token shingles (tokens: runs of word characters)
   of gold and extract give true positive, false positive and false negative counts, normalised to sum
   to 1; precision is the mean over pages with any predicted shingle, recall the mean over pages with
   any gold shingle, F1 their harmonic mean.
3. Kept-set agreement: every page of both sets through the `fineweb` preset's language precheck and
   text filters (language, Gopher repetition and quality, C4, FineWeb quality) with each engine's text;
   the pages each keeps and the Jaccard of the kept sets.
4. Milliseconds per page of extraction alone: wall (for a child: the round trip included, which a
   loaded machine stretches) and CPU (this process's and the child's; the speed column compares these).

Results: a table on stdout and WORK/extraction_results.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import resource
import tarfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from statistics import mean
from typing import Any

from resiliparse.extract.html2text import extract_plain_text

from tokenmill.pipeline.ingest.charset import decode_html
from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.extract import RESILIPARSE_OPTIONS, Extractor, ExtractSettings, visible_text
from tokenmill.pipeline.ingest.filters import build_text_filters
from tokenmill.pipeline.ingest.filters.language import LanguageFilter
from tokenmill.pipeline.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]
TRAFILATURA_TARBALL = "trafilatura_eval.tar.xz"
READABILITY_TARBALL = "readability_test_pages.tar.xz"
SHINGLE_SIZE = 4
REFERENCE = {"precision": 0.900, "recall": 0.940, "f1": 0.919}  # trafilatura 2.3.1, its own eval
_WORD = re.compile(r"\w+")

Extract = Callable[[str], tuple[str | None, str]]  # html -> (text or None, status)


@dataclass
class Page:
    name: str  # unique across both sets
    html: str | None  # None: no charset fits
    snippets: list[dict[str, list[str]]] = field(default_factory=list)  # trafilatura eval entries
    gold: str | None = None  # readability's expected text


def _read_files(tarball: Path) -> dict[str, bytes]:
    """Every regular file of a tarball by name, in one sequential pass."""
    with tarfile.open(tarball, "r:*") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar if member.isfile()}


def _decoded(body: bytes) -> str | None:
    decoded = decode_html(body, None)
    return None if decoded is None else decoded[0]


def trafilatura_pages(tarball: Path) -> list[Page]:
    """The eval's pages whose HTML is present, each with the entries of evaldata.json that name it."""
    files = _read_files(tarball)
    entries_by_file: dict[str, list[dict[str, list[str]]]] = {}
    for entry in json.loads(files["evaldata.json"]).values():
        if entry["file"] and f"eval/{entry['file']}" in files:
            entries_by_file.setdefault(entry["file"], []).append(
                {"with": entry["with"], "without": entry["without"]}
            )
    return [
        Page(name=f"trafilatura/{name}", html=_decoded(files[f"eval/{name}"]), snippets=entries)
        for name, entries in sorted(entries_by_file.items())
    ]


def readability_pages(tarball: Path) -> list[Page]:
    """Readability's test pages, each with its gold text: expected.html without its tags."""
    files = _read_files(tarball)
    names = sorted({path.split("/")[1] for path in files if path.endswith("/source.html")})
    pages = []
    for name in names:
        expected = _decoded(files[f"test-pages/{name}/expected.html"]) or ""
        gold = visible_text(expected, max_chars=len(expected))
        pages.append(
            Page(
                name=f"readability/{name}", html=_decoded(files[f"test-pages/{name}/source.html"]), gold=gold
            )
        )
    return pages


def snippet_counts(text: str | None, entry: dict[str, list[str]]) -> Counter[str]:
    """tp/fn over the snippets that must appear, fp/tn over those that must not."""
    found = text or ""
    counts: Counter[str] = Counter()
    for snippet in entry["with"]:
        counts["tp" if snippet in found else "fn"] += 1
    for snippet in entry["without"]:
        counts["fp" if snippet in found else "tn"] += 1
    return counts


def snippet_scores(counts: Counter[str]) -> dict[str, float]:
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {
        "precision": tp / (tp + fp),
        "recall": tp / (tp + fn),
        "f1": 2 * tp / (2 * tp + fp + fn),
        **{key: counts[key] for key in ("tp", "fp", "fn", "tn")},
    }


def shingles(text: str) -> Counter[tuple[str, ...]]:
    """4-token shingles of a text; a text shorter than that is one shorter shingle (as AEB counts)."""
    tokens = _WORD.findall(text)
    starts = range(max(1, len(tokens) - SHINGLE_SIZE + 1))
    return Counter(shingle for i in starts if (shingle := tuple(tokens[i : i + SHINGLE_SIZE])))


def shingle_fractions(gold: str, text: str | None) -> tuple[float, float, float]:
    """(tp, fp, fn) over shingle multisets, scaled to sum to 1 so that long pages weigh no more."""
    expected, predicted = shingles(gold), shingles(text or "")
    tp = sum((expected & predicted).values())
    fp = sum((predicted - expected).values())
    fn = sum((expected - predicted).values())
    total = tp + fp + fn
    return (tp / total, fp / total, fn / total) if total else (0.0, 0.0, 0.0)


def aeb_scores(fractions: list[tuple[float, float, float]]) -> dict[str, float]:
    precision = mean(tp / (tp + fp) for tp, fp, _ in fractions if tp + fp > 0)
    recall = mean(tp / (tp + fn) for tp, _, fn in fractions if tp + fn > 0)
    return {"precision": precision, "recall": recall, "f1": 2 * precision * recall / (precision + recall)}


def engines() -> dict[str, Extract]:
    """The engines in the order they take turns; the first two as ingest builds them from the recipe."""
    fineweb = load_recipe("fineweb").section("extract")

    def extractor(**changes: Any) -> Extractor:
        return Extractor(ExtractSettings.from_section({**fineweb, **changes}))

    def in_process(**changes: bool) -> Extract:
        options = {**RESILIPARSE_OPTIONS, "comments": fineweb["include_comments"], **changes}
        return lambda html: (extract_plain_text(html, **options).strip(), "ok")

    return {
        "trafilatura": extractor(),
        "resiliparse": extractor(engine="resiliparse"),
        "resiliparse in-process": in_process(),
        "resiliparse in-process, bullets": in_process(list_bullets=True),
        "trafilatura, eval settings": extractor(favor_precision=False, deduplicate=False, timeout_s=60.0),
    }


def _children_cpu_seconds() -> float:
    """CPU time of this process's reaped children: an extractor child's, once it is killed or closed."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def extract_all(pages: list[Page], chosen: dict[str, Extract]) -> dict[str, Any]:
    """Each engine's text of each page, wall seconds and CPU seconds (its child's included), closing the
    engines at the end. The engines take turns page by page in a shuffled order, so that no engine always
    meets a page first (cold caches) or after the same one."""
    texts: dict[str, dict[str, str | None]] = {name: {} for name in chosen}
    seconds: Counter[str] = Counter()
    cpu_seconds: Counter[str] = Counter()
    statuses: dict[str, Counter[str]] = {name: Counter() for name in chosen}
    names, order = list(chosen), random.Random(0)
    try:
        for number, page in enumerate(pages, start=1):
            for name in order.sample(names, len(names)):
                if page.html is None:
                    texts[name][page.name] = None
                    statuses[name]["undecodable"] += 1
                    continue
                started, cpu, children = time.perf_counter(), time.process_time(), _children_cpu_seconds()
                text, status = chosen[name](page.html)
                seconds[name] += time.perf_counter() - started
                cpu_seconds[name] += time.process_time() - cpu + _children_cpu_seconds() - children
                texts[name][page.name] = text
                statuses[name][status] += 1
            if number % 100 == 0:
                print(f"  extracted {number}/{len(pages)} pages", flush=True)
    finally:
        for name, extract in chosen.items():
            if isinstance(extract, Extractor):
                children = _children_cpu_seconds()
                extract.close()  # reaps the child: its CPU time becomes countable
                cpu_seconds[name] += _children_cpu_seconds() - children
    return {"texts": texts, "seconds": seconds, "cpu_seconds": cpu_seconds, "statuses": statuses}


class FinewebChain:
    """The `fineweb` preset's language precheck and text filters, as ingest runs them after extraction."""

    def __init__(self) -> None:
        recipe = load_recipe("fineweb")
        self.filters = build_text_filters(recipe)
        self.language = next(f for f in self.filters if isinstance(f, LanguageFilter))

    def fate(self, page: Page, text: str | None) -> str | None:
        """None when ingest would keep the page with this text, else its drop reason, "stage:reason"."""
        if page.html is None:
            return "decode:undecodable"
        doc = Document(id=page.name, text="", url=page.name, date="", file_path="bench")
        if not self.language.precheck(doc, page.html):
            return "language:precheck_other_language"
        if not text:
            return "extract:no_text"
        doc.set_text(text)
        for text_filter in self.filters:
            if reason := text_filter(doc):
                return f"{text_filter.name}:{reason}"
        return None


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def agreement(fates: dict[str, dict[str, str | None]], first: str, second: str) -> dict[str, Any]:
    """Kept-set sizes and Jaccard of two engines, and why each dropped the pages only the other kept."""
    kept = {
        name: {page for page, reason in fates[name].items() if reason is None} for name in (first, second)
    }
    only = {first: kept[first] - kept[second], second: kept[second] - kept[first]}
    return {
        first: len(kept[first]),
        second: len(kept[second]),
        "both": len(kept[first] & kept[second]),
        "jaccard": jaccard(kept[first], kept[second]),
        **{
            f"{this}_drops_of_pages_only_{other}_keeps": dict(
                Counter(fates[this][page] for page in only[other]).most_common()
            )
            for this, other in ((first, second), (second, first))
        },
    }


def print_report(results: dict[str, Any]) -> None:
    pages = results["pages"]
    print(
        f"\nextraction: {pages['trafilatura_eval']} trafilatura eval pages "
        f"({results['snippets']} snippets), {pages['readability']} readability pages"
    )
    header = (
        f"{'engine':<32} {'eval P':>7} {'eval R':>7} {'eval F1':>8} {'AEB P':>7} {'AEB R':>7} "
        f"{'AEB F1':>7} {'wall ms':>8} {'CPU ms':>7} {'speed':>6} {'kept':>5}"
    )
    print(header)
    print("-" * len(header))
    anchor = results["engines"]["trafilatura"]["cpu_ms_per_page"]
    for name, row in results["engines"].items():
        snippet, aeb = row["trafilatura_eval"], row["readability_aeb"]
        print(
            f"{name:<32} {snippet['precision']:>7.3f} {snippet['recall']:>7.3f} {snippet['f1']:>8.3f} "
            f"{aeb['precision']:>7.3f} {aeb['recall']:>7.3f} {aeb['f1']:>7.3f} "
            f"{row['ms_per_page']:>8.2f} {row['cpu_ms_per_page']:>7.2f} "
            f"{anchor / row['cpu_ms_per_page']:>5.1f}x {row['kept']:>5}"
        )
    reference = results["reference"]
    print(
        f"{'published (trafilatura 2.3.1)':<32} {reference['precision']:>7.3f} {reference['recall']:>7.3f} "
        f"{reference['f1']:>8.3f}"
    )
    kept = results["kept_agreement"]
    print(
        f"\nkept by the fineweb chain: trafilatura {kept['trafilatura']}, resiliparse {kept['resiliparse']}, "
        f"both {kept['both']}; Jaccard {kept['jaccard']:.4f}"
    )
    for key, reasons in kept.items():
        if key.endswith("_keeps"):
            print(f"  {key.replace('_', ' ')}: {reasons}")
    for name, row in results["engines"].items():
        print(f"statuses {name}: {row['statuses']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--src", type=Path, default=REPO / "bench" / "data" / "extraction")
    parser.add_argument("--work", type=Path, default=REPO / "bench" / "work")
    parser.add_argument("--pages", type=int, default=None, help="only the first N pages of each set")
    args = parser.parse_args()

    evaluated = trafilatura_pages(args.src / TRAFILATURA_TARBALL)[: args.pages]
    readability = readability_pages(args.src / READABILITY_TARBALL)[: args.pages]
    pages = evaluated + readability
    print(f"extracting {len(pages)} pages with each engine", flush=True)
    extracted = extract_all(pages, engines())
    texts = extracted["texts"]
    chain = FinewebChain()
    fates = {
        name: {page.name: chain.fate(page, by_page[page.name]) for page in pages}
        for name, by_page in texts.items()
    }

    results: dict[str, Any] = {
        "versions": {package: version(package) for package in ("trafilatura", "resiliparse")},
        "pages": {"trafilatura_eval": len(evaluated), "readability": len(readability)},
        "snippets": sum(len(e["with"]) + len(e["without"]) for page in evaluated for e in page.snippets),
        "reference": REFERENCE,
        "engines": {},
    }
    for name, by_page in texts.items():
        counts = sum(
            (snippet_counts(by_page[page.name], entry) for page in evaluated for entry in page.snippets),
            Counter(),
        )
        fractions = [shingle_fractions(page.gold or "", by_page[page.name]) for page in readability]
        results["engines"][name] = {
            "trafilatura_eval": snippet_scores(counts),
            "readability_aeb": aeb_scores(fractions),
            "ms_per_page": 1000 * extracted["seconds"][name] / len(pages),
            "cpu_ms_per_page": 1000 * extracted["cpu_seconds"][name] / len(pages),
            "kept": sum(reason is None for reason in fates[name].values()),
            "statuses": dict(extracted["statuses"][name]),
        }
    results["kept_agreement"] = agreement(fates, "trafilatura", "resiliparse")
    print_report(results)
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.work / "extraction_results.json"
    out.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
