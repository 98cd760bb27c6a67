"""Positive and negative texts from the repository's own samples, for the quality classifier's tests and
for rebuilding the demonstration model: `python -m tests.quality_data` (from the repository root) writes
them under build/quality_demo/, trains on them with DEMO_OPTIONS and copies the model and its card into
pipeline/quality/models/demo/.

Positives (reference-style prose): the paragraphs of cs336_high_quality_wiki_reference.txt (one
encyclopedia entry) and of wikitext-2_valid_head.txt (the first 605 lines of WikiText-2's validation
split, Wikipedia articles, CC BY-SA 3.0) with WikiText's tokenisation undone. Negatives (the web as
crawled): the paragraphs of the 20 Common Crawl documents of Dolma's CC head-bucket samples and of
cs336_low_quality_cc.txt (a forum page's navigation and boilerplate). A paragraph is a non-blank line
of at least MIN_WORDS words, so headings and menu items do not count as documents of either class.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import sys
from pathlib import Path

TEXT = Path(__file__).parent / "data" / "text"
MIN_WORDS = 10
DEMO_DATA = Path("build/quality_demo")
DEMO_OPTIONS = ["--dim", "16", "--epochs", "25", "--bucket", "100000", "--quantize-rows", "20000"]

# WikiText splits hyphens and number separators into " @-@ ", " @,@ ", " @.@ " and writes rare words
# as <unk>; left in, they would be the easiest sign of a positive.
_WIKITEXT_ESCAPE = re.compile(r" @([-,.])@ ")


def paragraphs(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if len(line.split()) >= MIN_WORDS]


def wikitext_paragraphs(text: str) -> list[str]:
    """Article paragraphs without headings (" = Title = "), escapes undone and <unk> dropped."""
    lines = (line for line in text.splitlines() if not line.strip().startswith("="))
    return paragraphs("\n".join(_WIKITEXT_ESCAPE.sub(r"\1", line).replace(" <unk>", "") for line in lines))


def dolma_paragraphs(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [paragraph for line in lines for paragraph in paragraphs(json.loads(line)["text"])]


def _read(name: str) -> str:
    return (TEXT / name).read_text(encoding="utf-8")


def sources() -> dict[str, dict[str, list[str]]]:
    """class -> source name -> its paragraphs."""
    return {
        "positive": {
            "cs336_high_quality_wiki_reference": paragraphs(_read("cs336_high_quality_wiki_reference.txt")),
            "wikitext-2_valid_head": wikitext_paragraphs(_read("wikitext-2_valid_head.txt")),
        },
        "negative": {
            "cs336_low_quality_cc": paragraphs(_read("cs336_low_quality_cc.txt")),
            **{
                path.name.removesuffix(".jsonl.gz"): dolma_paragraphs(path)
                for path in sorted(TEXT.glob("dolma_cc_*"))
            },
        },
    }


def write_datasets(directory: Path) -> dict[str, Path]:
    """DIRECTORY/positive/ and DIRECTORY/negative/, one JSONL file ({"text": paragraph}) per source;
    class -> its dataset directory."""
    datasets = {}
    for name, by_source in sources().items():
        datasets[name] = directory / name
        datasets[name].mkdir(parents=True, exist_ok=True)
        for source, texts in by_source.items():
            rows = "".join(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in texts)
            (datasets[name] / f"{source}.jsonl").write_text(rows, encoding="utf-8")
    return datasets


def build_demo() -> int:
    """Train on the paragraphs into build/quality_demo/model, then copy the model and its card (whose
    command is the one that ran) over the shipped ones, leaving the demo's README in place."""
    from tokenmill.jobs.cli import main
    from tokenmill.pipeline.quality.classifier import CARD_FILE, DEMO_MODEL, MODEL_FILE

    datasets = write_datasets(DEMO_DATA)
    model = DEMO_DATA / "model"
    arguments = ["--positive", str(datasets["positive"]), "--negative", str(datasets["negative"])]
    status = main(["train-classifier", "-o", str(model), *arguments, *DEMO_OPTIONS])
    for name in (MODEL_FILE, CARD_FILE) if status == 0 else ():
        shutil.copyfile(model / name, DEMO_MODEL / name)
    return status


if __name__ == "__main__":
    sys.exit(build_demo())
