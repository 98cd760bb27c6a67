"""Golden outputs of `tokenmill tokenize`: a small real corpus, a few configurations, and per
configuration a manifest of what the shards hold, so a rewrite of the job is checked byte for byte.

    python -m tests.tokenize_golden --write    # (re)writes tests/data/tokenizer/golden/*.json

The corpus is rebuilt deterministically from tests/data/text; only the manifests are stored. A manifest
holds each shard's sha256 of `.bin` and `.idx`, a digest of the `.parquet` rows (their values, not the
file's bytes, which depend on the pyarrow version) and the run's counts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "tokenizer" / "golden"
FILES = 3

# name -> tokenize flags; every configuration also gets --input, -o and --master
CONFIGURATIONS: dict[str, list[str]] = {
    "gpt2_seed0": ["--encoding", "gpt2", "--shard-tokens", "7000", "--val-tokens", "3000"],
    "gpt2_seed9": ["--encoding", "gpt2", "--shard-tokens", "7000", "--val-tokens", "3000", "--seed", "9"],
    "gpt2_upsample": [
        "--encoding",
        "gpt2",
        "--shard-tokens",
        "9000",
        "--seed",
        "4",
        "--upsample-by",
        "minhash_cluster_size",
    ],  # fmt: skip
    "cl100k_uint32": ["--encoding", "cl100k_base", "--shard-tokens", "12000", "--seed", "2"],
}


def documents() -> list[dict[str, Any]]:
    """~300 documents of real text with ids, FineWeb-2's cluster-size column (some unknown), and the
    awkward cases: a text holding "<|endoftext|>", an empty and a null text, non-ASCII texts."""
    text = DATA / "text"
    shakespeare = (text / "tinyshakespeare_input.txt").read_text(encoding="utf-8")
    speeches = [speech for speech in shakespeare.split("\n\n") if speech.strip()][:200]
    wiki = (text / "wikitext-2_valid_head.txt").read_text(encoding="utf-8")
    sections = [section for section in wiki.split("\n = ") if section.strip()][:60]
    texts = (
        speeches
        + sections
        + [
            (text / "cs336_german.txt").read_text(encoding="utf-8"),
            (text / "cs336_tinystories_sample.txt").read_text(encoding="utf-8"),
            "A page that quotes <|endoftext|> in its text, twice: <|endoftext|>.",
            "Ünïcödé: 東京 café, naïve façade — 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 😀",
            "",
            None,
        ]
    )
    sizes = np.random.default_rng(17).integers(1, 150, len(texts)).tolist()
    return [
        {
            "id": f"doc-{(index * 7919) % 1000:04d}-{index}",
            "text": body,
            "minhash_cluster_size": None if index % 37 == 5 else size,
        }
        for index, (body, size) in enumerate(zip(texts, sizes, strict=True))
    ]


def write_corpus(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    docs = documents()
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("minhash_cluster_size", pa.int64())])
    for index in range(FILES):
        pq.write_table(
            pa.Table.from_pylist(docs[index::FILES], schema=schema), directory / f"part-{index}.parquet"
        )
    return directory


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows_digest(path: Path) -> str:
    """sha256 of the Parquet shard's rows: id, offset, piece and the tokens' values, in file order."""
    table = pq.read_table(path).to_pydict()
    return hashlib.sha256(json.dumps(table, separators=(",", ":")).encode()).hexdigest()


def describe(shards: Path) -> dict[str, Any]:
    """What a tokenize output directory holds, as the golden manifests store it."""
    manifest = json.loads((shards / "manifest.json").read_text())
    return {
        "dtype": manifest["dtype"],
        "counts": manifest["counts"],
        "shards": [
            {
                "bin": _sha256(shards / shard["bin"]),
                "idx": _sha256(shards / shard["idx"]),
                "parquet_rows": rows_digest(shards / shard["parquet"]),
                "tokens": shard["tokens"],
                "documents": shard["documents"],
            }
            for shard in manifest["shards"]
        ],
    }


def run(name: str, corpus: Path, work: Path, master: str = "local[2]") -> dict[str, Any]:
    """Tokenize the corpus with configuration `name`; the description of its output."""
    from tokenmill.jobs import cli

    root = work / name
    args = ["tokenize", "-o", str(root), "--input", str(corpus), "--master", master, *CONFIGURATIONS[name]]
    if cli.main(args) != 0:
        raise RuntimeError(f"tokenize {name} failed")
    manifest = json.loads(next((root / "tokens").glob("*/manifest.json")).read_text())
    return describe(root / "tokens" / manifest["tokenizer"]["name"])


def golden(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write the manifests (else compare)")
    args = parser.parse_args()
    GOLDEN.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        corpus = write_corpus(Path(work) / "corpus")
        for name in CONFIGURATIONS:
            found = run(name, corpus, Path(work))
            if args.write:
                (GOLDEN / f"{name}.json").write_text(json.dumps(found, indent=1) + "\n")
                print(f"wrote {name}: {len(found['shards'])} shards, {found['counts']['tokens']:,} tokens")
            else:
                print(f"{name}: {'same' if found == golden(name) else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
