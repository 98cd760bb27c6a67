"""Training a quality classifier: positives against negatives, fastText supervised, judged on held-out text.

Every text is normalized exactly as the classifier normalizes at scoring time (classifier.normalize). A
text is held out when a hash of its normalized form and the seed falls in the `holdout` share, so the
split does not depend on input order and identical texts always land on the same side. Training runs on
one thread with the seed: the same inputs and settings give the same model and the same card.

The held-out part gives the card's metrics: precision and recall of "positive" at score >= 0.5, ROC AUC
(the chance that a random positive outscores a random negative, ties counting half) and the quantiles of
each class's scores, which is what a user picks a --min-score or --keep-top from.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.quality.classifier import NORMALIZATION, QualityClassifier, normalize
from tokenmill.pipeline.storage import S3Options, open_input
from tokenmill.pipeline.storage.rows import column_values, dataset_files

POSITIVE, NEGATIVE = "__label__hq", "__label__lq"
THRESHOLD = 0.5
QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 5
    ngrams: int = 2  # fastText's wordNgrams: 2 adds word pairs, as DCLM's classifier does
    dim: int = 64
    lr: float = 0.1
    bucket: int = 2_000_000  # hashed rows for the word n-grams (fastText's default)
    quantize_rows: int = 0  # 0: a full model; N: quantized, keeping the N most useful rows
    holdout: float = 0.1
    seed: int = 0


# ---------------------------------------------------------------------------------------------------
# Reading the texts of a dataset


@dataclass(frozen=True)
class InputFile:
    """One file that was read: the card's record of what the model was trained on."""

    uri: str
    sha256: str
    rows: int
    skipped: dict[str, int]  # reason -> rows without a usable text


def _sha256(uri: str, s3: S3Options) -> str:
    digest = hashlib.sha256()
    with open_input(uri, s3) as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def read_texts(uri: str, column: str, s3: S3Options) -> tuple[list[str], list[InputFile]]:
    """The texts of every file of a dataset, in file order, and each file's record. A row without a
    string in `column` is counted as "no text" and skipped; a Parquet file without the column, or a
    dataset where no row has it, is a UserError."""
    texts: list[str] = []
    records = []
    for file in dataset_files(uri, s3):
        rows, skipped = 0, Counter[str]()
        for text in column_values(file, column, s3):
            rows += 1
            if isinstance(text, str):
                texts.append(text)
            else:
                skipped["no text"] += 1
        records.append(InputFile(file, _sha256(file, s3), rows, dict(skipped)))
    if not texts:
        raise UserError(f"{uri} has no rows with a string column {column!r}: check --text-column")
    return texts, records


# ---------------------------------------------------------------------------------------------------
# Held-out split and metrics


def is_held_out(normalized: str, holdout: float, seed: int) -> bool:
    """Whether a text belongs to the held-out share: a function of its normalized form and the seed."""
    digest = hashlib.sha256(seed.to_bytes(8, "big", signed=True) + normalized.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout


def roc_auc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """The Mann-Whitney form of ROC AUC: (rank sum of the positives - its minimum) / (n_pos * n_neg),
    ranks over both classes together with tied scores given their average rank."""
    scores = np.concatenate([positive_scores, negative_scores])
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    # Each run of equal scores [start, end) gets the average of the 1-based ranks start+1 .. end.
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    n_pos, n_neg = len(positive_scores), len(negative_scores)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def heldout_metrics(positive_scores: np.ndarray, negative_scores: np.ndarray) -> dict[str, Any]:
    """Precision and recall of "positive" at score >= THRESHOLD (precision None when nothing is called
    positive), ROC AUC, and each class's score quantiles."""
    true_positives = int((positive_scores >= THRESHOLD).sum())
    called_positive = true_positives + int((negative_scores >= THRESHOLD).sum())
    return {
        "positives": len(positive_scores),
        "negatives": len(negative_scores),
        "threshold": THRESHOLD,
        "precision": true_positives / called_positive if called_positive else None,
        "recall": true_positives / len(positive_scores),
        "roc_auc": roc_auc(positive_scores, negative_scores),
        "quantiles": {
            name: {
                str(q): float(value)
                for q, value in zip(QUANTILES, np.quantile(scores, QUANTILES), strict=True)
            }
            for name, scores in (("positive", positive_scores), ("negative", negative_scores))
        },
    }


# ---------------------------------------------------------------------------------------------------
# Training


def fasttext_version() -> str:
    """The distribution that provides the `fasttext` module, with its version."""
    (distribution, *_) = metadata.packages_distributions().get("fasttext", ["unknown"])
    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        return distribution


def _split(texts: Sequence[str], settings: TrainingSettings) -> tuple[list[str], list[str], int]:
    """(training, held-out) normalized texts and how many texts normalized to nothing (skipped)."""
    train, heldout, empty = [], [], 0
    for text in texts:
        normalized = normalize(text)
        if not normalized:
            empty += 1
        elif is_held_out(normalized, settings.holdout, settings.seed):
            heldout.append(normalized)
        else:
            train.append(normalized)
    return train, heldout, empty


def _train_fasttext(train_file: str, model_file: str, settings: TrainingSettings) -> None:
    """Train on `train_file` and save the model to `model_file`; run in a process of its own."""
    import fasttext

    model = fasttext.train_supervised(
        input=train_file,
        epoch=settings.epochs,
        lr=settings.lr,
        dim=settings.dim,
        wordNgrams=settings.ngrams,
        bucket=settings.bucket,
        minCount=1,
        loss="softmax",
        thread=1,
        seed=settings.seed,
        verbose=0,
    )
    if settings.quantize_rows:
        model.quantize(input=train_file, qnorm=True, retrain=True, cutoff=settings.quantize_rows, thread=1)
    model.save_model(model_file)


def _train_in_fresh_process(train_file: Path, model_file: Path, settings: TrainingSettings) -> None:
    """fastText's training is a function of its inputs only in a process that has not predicted
    before: measured with fasttext-numpy2-wheel 0.9.2, after predictions the same seed gave other
    weights and now and then stopped with "Encountered NaN", while a fresh process gave the same model
    every time. So every training runs in a new interpreter (this module's __main__)."""
    command = [sys.executable, "-m", __name__, str(train_file), str(model_file), json.dumps(asdict(settings))]
    finished = subprocess.run(command, capture_output=True, text=True)
    if finished.returncode != 0:
        last_line = (finished.stderr.strip().splitlines() or ["no message"])[-1]
        if "Encountered NaN" in last_line:
            raise UserError(f"training diverged (fastText: {last_line}): give a lower --lr")
        raise RuntimeError(f"fastText training failed: {finished.stderr}")


def train_classifier(
    positives: Sequence[str], negatives: Sequence[str], settings: TrainingSettings
) -> tuple[QualityClassifier, dict[str, Any]]:
    """A classifier of positives (label POSITIVE) against negatives, and its card: settings, examples
    per class and side, and the held-out metrics. UserError when a class has nothing to train on or
    nothing held out."""
    import fasttext

    split = {"positive": _split(positives, settings), "negative": _split(negatives, settings)}
    for name, (train, heldout, _) in split.items():
        if not train or not heldout:
            raise UserError(
                f"the {name} texts give {len(train)} to train on and {len(heldout)} held out: "
                "give more texts or another --holdout"
            )
    lines = [
        f"{label} {text}\n"
        for label, name in ((POSITIVE, "positive"), (NEGATIVE, "negative"))
        for text in split[name][0]
    ]
    # fastText learns in file order with a decaying rate; a seeded shuffle keeps one class from coming last.
    lines = [lines[i] for i in np.random.default_rng(settings.seed).permutation(len(lines))]
    with tempfile.TemporaryDirectory() as scratch:
        train_file, model_file = Path(scratch) / "train.txt", Path(scratch) / "model.bin"
        train_file.write_text("".join(lines), encoding="utf-8")
        _train_in_fresh_process(train_file, model_file, settings)
        model = fasttext.load_model(str(model_file))
    classifier = QualityClassifier(model, POSITIVE)
    scores = {name: classifier.scores(heldout) for name, (_, heldout, _) in split.items()}
    card = {
        "label": POSITIVE,
        "negative_label": NEGATIVE,
        "normalization": NORMALIZATION,
        "settings": asdict(settings),
        "examples": {
            name: {"train": len(train), "heldout": len(heldout), "empty_after_normalization": empty}
            for name, (train, heldout, empty) in split.items()
        },
        "heldout": heldout_metrics(scores["positive"], scores["negative"]),
        "fasttext": fasttext_version(),
    }
    return classifier, card


if __name__ == "__main__":
    _train_fasttext(sys.argv[1], sys.argv[2], TrainingSettings(**json.loads(sys.argv[3])))
