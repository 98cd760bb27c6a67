"""The quality classifier: normalization, the held-out metrics, `tokenmill train-classifier` on the
repository's own texts (tests/quality_data.py), and the shipped demonstration model."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.quality_data import TEXT, paragraphs, write_datasets
from tokenmill.jobs import cli
from tokenmill.pipeline.quality.classifier import DEMO_MODEL, QualityClassifier, normalize, resolve_model
from tokenmill.pipeline.quality.train import is_held_out, roc_auc

# Small and fast: ~1 s to train on the ~400 positive and ~500 negative paragraphs.
OPTIONS = ["--dim", "16", "--epochs", "25", "--bucket", "100000"]
# Measured with OPTIONS on these paragraphs: held-out AUC 0.934-0.986 over seeds 0-7 (0.964 at seed 0),
# with ~40 positives and ~60 negatives held out, where the AUC's standard error is about 0.02. 0.90
# is below every seed's measurement by more than a standard error and far above chance (0.5).
MIN_AUC = 0.90


def _one_line_error(capsys, argv: list[str], expected: str) -> None:
    assert cli.main(argv) == cli.EXIT_USER_ERROR
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith("tokenmill train-classifier: error: ") and expected in lines[0], lines[0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """The repository's paragraphs, one source as Parquet, and gzipped JSONL rows without a usable text."""
    found = write_datasets(tmp_path_factory.mktemp("quality"))
    wikitext = found["positive"] / "wikitext-2_valid_head.jsonl"
    rows = [json.loads(line) for line in wikitext.read_text(encoding="utf-8").splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), wikitext.with_suffix(".parquet"))
    wikitext.unlink()
    bad_rows = b'not json\n{"text": null}\n{"title": "no text key"}\n\n["a list"]\n'
    (found["negative"] / "bad_rows.jsonl.gz").write_bytes(gzip.compress(bad_rows, mtime=0))
    return found


@pytest.fixture(scope="module")
def trained(datasets, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("model") / "model"
    argv = ["train-classifier", "-o", str(out), "--positive", str(datasets["positive"])]
    assert cli.main([*argv, "--negative", str(datasets["negative"]), *OPTIONS]) == 0
    return out


def test_normalize_lowercases_and_separates_words_and_punctuation():
    assert normalize("  The Cat's\tmat,\n\nWAS red.  ") == "the cat ' s mat , was red ."
    assert normalize("Ünïcode — Ökonomie!") == "ünïcode — ökonomie !"
    assert normalize(" \n\t ") == ""


def test_roc_auc_known_answers():
    assert roc_auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == 1.0
    assert roc_auc(np.array([0.1, 0.2]), np.array([0.9, 0.8])) == 0.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([0.5])) == 0.5
    # Pairs (p, n): (0.8, 0.8) ties -> 1/2, (0.8, 0.3) -> 1, (0.2, 0.8) -> 0, (0.2, 0.3) -> 0: 1.5 / 4.
    assert roc_auc(np.array([0.8, 0.2]), np.array([0.8, 0.3])) == 0.375


def test_roc_auc_equals_the_share_of_correctly_ordered_pairs():
    rng = np.random.default_rng(0)
    positive, negative = rng.integers(0, 20, 300) / 20, rng.integers(0, 15, 200) / 20  # many ties
    difference = positive[:, None] - negative[None, :]
    by_pairs = ((difference > 0).sum() + 0.5 * (difference == 0).sum()) / difference.size
    assert roc_auc(positive, negative) == pytest.approx(by_pairs, abs=1e-12)


def test_the_held_out_share_depends_on_the_text_and_seed_only():
    texts = [f"document number {i}" for i in range(4000)]
    held = [is_held_out(text, 0.1, seed=0) for text in texts]
    assert 0.085 < sum(held) / len(texts) < 0.115
    assert held == [is_held_out(text, 0.1, seed=0) for text in reversed(texts)][::-1]
    assert held != [is_held_out(text, 0.1, seed=1) for text in texts]


def test_a_trained_classifier_separates_its_held_out_classes(trained):
    card = json.loads((trained / "card.json").read_text())
    metrics = card["heldout"]
    assert metrics["roc_auc"] >= MIN_AUC, metrics
    assert metrics["precision"] > 0.8 and metrics["recall"] > 0.8, metrics
    quantiles = metrics["quantiles"]
    assert quantiles["positive"]["0.5"] > 0.5 > quantiles["negative"]["0.5"]
    assert list(quantiles["positive"].values()) == sorted(quantiles["positive"].values())
    examples = card["examples"]
    assert examples["positive"]["heldout"] == metrics["positives"] > 20
    assert examples["negative"]["heldout"] == metrics["negatives"] > 20


def test_the_card_records_every_input_with_its_hash_and_rows(trained, datasets):
    card = json.loads((trained / "card.json").read_text())
    for name in ("positive", "negative"):
        files = sorted(datasets[name].iterdir())
        recorded = card["inputs"][name]
        assert [Path(entry["uri"]) for entry in recorded] == files
        assert [entry["sha256"] for entry in recorded] == [_sha256(path) for path in files]
    by_name = {Path(entry["uri"]).name: entry for entry in card["inputs"]["negative"]}
    assert by_name["bad_rows.jsonl.gz"] == {
        **by_name["bad_rows.jsonl.gz"],
        "rows": 4,
        "skipped": {"no text": 4},
    }
    wiki = (TEXT / "cs336_high_quality_wiki_reference.txt").read_text(encoding="utf-8")
    (wiki_entry,) = [entry for entry in card["inputs"]["positive"] if "wiki_reference" in entry["uri"]]
    assert wiki_entry["rows"] == len(paragraphs(wiki)) and wiki_entry["skipped"] == {}
    assert card["settings"]["dim"] == 16 and card["settings"]["seed"] == 0
    assert card["fasttext"].startswith("fasttext-numpy2-wheel ")
    assert card["command"].startswith(f"tokenmill train-classifier -o {trained} --positive ")


def test_scores_do_not_depend_on_case_or_spacing(trained):
    classifier = QualityClassifier.load(trained)
    text = paragraphs((TEXT / "cs336_high_quality_wiki_reference.txt").read_text(encoding="utf-8"))[3]
    variant = "\n\n  " + text.upper().replace(" ", " \t ").replace(",", " ,\n")
    first, second = classifier.scores([text, variant])
    assert first == second and 0 < first < 1


def test_the_same_command_gives_the_same_model_replacing_the_old_one(trained, datasets, tmp_path):
    again = tmp_path / "again"
    again.mkdir()
    (again / "card.json").write_text("{}")  # an earlier model tokenmill wrote there, replaced whole
    (again / "stale.txt").write_text("from the earlier model")
    argv = ["train-classifier", "-o", str(again), "--positive", str(datasets["positive"])]
    assert cli.main([*argv, "--negative", str(datasets["negative"]), *OPTIONS]) == 0
    first, second = (json.loads((path / "card.json").read_text()) for path in (trained, again))
    assert first["heldout"] == second["heldout"] and first["inputs"] == second["inputs"]
    assert _sha256(trained / "model.bin") == _sha256(again / "model.bin")
    assert sorted(path.name for path in again.iterdir()) == ["card.json", "model.bin"]
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary left


def test_a_directory_tokenmill_did_not_write_is_refused(datasets, tmp_path, capsys):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    argv = [
        "train-classifier",
        "--positive",
        str(datasets["positive"]),
        "--negative",
        str(datasets["negative"]),
    ]
    _one_line_error(capsys, [*argv, "-o", str(foreign)], "is not a tokenmill model directory")
    assert (foreign / "notes.txt").read_text() == "mine"


def test_the_demo_model_prefers_reference_prose_to_a_spammy_page():
    assert resolve_model("demo") == DEMO_MODEL
    classifier = QualityClassifier.load("demo")
    assert classifier.label == "__label__hq"
    wiki = paragraphs((TEXT / "cs336_high_quality_wiki_reference.txt").read_text(encoding="utf-8"))[1]
    spam = (TEXT / "cs336_low_quality_cc.txt").read_text(encoding="utf-8")
    wiki_score, spam_score = classifier.scores([wiki, spam])
    assert wiki_score > 0.5 > spam_score, (wiki_score, spam_score)
    negative_label = QualityClassifier.load("demo", label="__label__lq").scores([wiki, spam])
    assert np.allclose(negative_label + [wiki_score, spam_score], 1.0, atol=1e-6)  # fastText's 1e-5 removed
    card = json.loads((DEMO_MODEL / "card.json").read_text())
    assert card["heldout"]["roc_auc"] >= MIN_AUC
    assert (DEMO_MODEL / "model.bin").stat().st_size < 1_000_000


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "does not exist"),
        ("no text column", "has no rows with a string column 'text'"),
        ("parquet without the column", "has no column text"),
        ("empty class", "the negative texts give 0 to train on"),
        ("not a dataset file", "is neither JSONL nor Parquet"),
        ("no negatives", "give at least one --positive and one --negative"),
    ],
)
def test_user_mistakes_are_one_line(case, expected, datasets, tmp_path, capsys):
    negative = tmp_path / "negative.jsonl"
    if case == "no text column":
        negative.write_text('{"body": "some words here"}\n')
    elif case == "parquet without the column":
        negative = tmp_path / "negative.parquet"
        pq.write_table(pa.table({"body": ["some words here"]}), negative)
    elif case == "empty class":
        negative.write_text('{"text": "  "}\n{"text": "\\n"}\n')
    elif case == "not a dataset file":
        negative = tmp_path / "pages"
        negative.mkdir()
        (negative / "page.html").write_text("<p>hello</p>")
    argv = ["train-classifier", "-o", str(tmp_path / "out"), "--positive", str(datasets["positive"])]
    argv += ["--negative"] if case == "no negatives" else ["--negative", str(negative)]
    _one_line_error(capsys, argv, expected)
    assert not (tmp_path / "out").exists()
