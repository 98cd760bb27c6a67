"""Train-classifier: a fastText quality classifier of positive against negative texts, with its card.

    tokenmill train-classifier -o MODEL_DIR --positive DATASET... --negative DATASET...
                               [--text-column text] [--epochs N] [--ngrams N] [--dim N] [--lr LR]
                               [--bucket N] [--quantize-rows N] [--holdout F] [--seed S]

DATASET is a JSONL (optionally .gz) or Parquet file, or a directory of them, local or s3://, with the
text in --text-column; rows without a string there are counted in the card and skipped. Positives are
the text to find more of (references, instruction data), negatives a random sample of what is to be
filtered (your own ingest's documents). MODEL_DIR (local) receives model.bin and card.json: every input
file with its sha256 and row count, the settings, the held-out precision, recall, ROC AUC and each
class's score quantiles, the fastText version and this command in full. A recipe's [[classifiers]]
entry names MODEL_DIR to score documents during ingest. No Spark: training runs on one CPU thread,
so the same inputs and seed give the same model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenmill.jobs.stages.settings import option
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.quality.classifier import CARD_FILE, MODEL_FILE
from tokenmill.pipeline.storage import S3Options

SUMMARY = "positive + negative texts -> a fastText quality classifier and its card"
COMMAND = "train-classifier"


@dataclass(frozen=True, kw_only=True)
class TrainClassifierSettings:
    output: str = option(help="the model directory to write (local)", flags=("-o", "--output"), metavar="DIR")
    positive: tuple[str, ...] = option(help="datasets of the text to keep", metavar="DATASET")
    negative: tuple[str, ...] = option(help="datasets of the text to filter out", metavar="DATASET")
    text_column: str = option("text", "the column (JSON key) holding the text (default text)", metavar="NAME")
    epochs: int = option(5, "passes over the training texts (default 5)", metavar="N")
    ngrams: int = option(2, "word n-gram length, fastText's wordNgrams (default 2)", metavar="N")
    dim: int = option(64, "embedding size (default 64)", metavar="N")
    lr: float = option(0.1, "learning rate (default 0.1)", metavar="LR")
    bucket: int = option(2_000_000, "hashed rows for word n-grams (default 2000000)", metavar="N")
    quantize_rows: int = option(
        0, "quantize, keeping the N most useful rows: a model of kilobytes (default 0: full)", metavar="N"
    )
    holdout: float = option(0.1, "share of texts held out for the metrics (default 0.1)", metavar="F")
    seed: int = option(0, "seed of the held-out split and of training (default 0)", metavar="S")
    s3_endpoint: str | None = option(None, "S3-compatible endpoint (also AWS_ENDPOINT_URL)", metavar="URL")

    def __post_init__(self) -> None:
        if not self.positive or not self.negative:
            raise UserError("give at least one --positive and one --negative dataset")
        for flag, value in (("--epochs", self.epochs), ("--ngrams", self.ngrams), ("--dim", self.dim)):
            if value < 1:
                raise UserError(f"{flag} {value}: give 1 or more")
        if self.bucket < 1 or self.quantize_rows < 0:
            raise UserError("--bucket must be 1 or more and --quantize-rows 0 or more")
        if not 0 < self.holdout < 1:
            raise UserError(f"--holdout {self.holdout}: give a share in (0, 1), e.g. 0.1")
        if self.lr <= 0:
            raise UserError(f"--lr {self.lr}: give a positive learning rate")

    @property
    def s3(self) -> S3Options:
        return S3Options(endpoint_url=self.s3_endpoint)

    def command_line(self) -> str:
        """The command that gives these settings, every option spelled out, to rebuild the model."""
        words = ["tokenmill", COMMAND]
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if value is None:
                continue
            flag = (spec.metadata["flags"] or (f"--{spec.name.replace('_', '-')}",))[0]
            words += [flag, *value] if isinstance(value, tuple) else [flag, str(value)]
        return shlex.join(words)


def check_train_classifier(settings: TrainClassifierSettings) -> None:
    """Local inputs exist; the output is local and is either new, empty or a model tokenmill wrote."""
    for dataset in (*settings.positive, *settings.negative):
        if "://" not in dataset and not Path(dataset).exists():
            raise UserError(f"{dataset} does not exist: give a JSONL or Parquet file or a directory of them")
    if "://" in settings.output:
        raise UserError(f"-o {settings.output}: the model directory must be local")
    out = Path(settings.output)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / CARD_FILE).is_file())):
        raise UserError(f"-o {out} exists and is not a tokenmill model directory: give a new directory")


def _write_atomically(out: Path, write: Any) -> None:
    """write(directory) into a hidden temporary directory beside `out`, then swap it in by rename, so
    `out` is always either the old model or the whole new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fresh, old = (out.parent / f".{out.name}.{suffix}-{os.getpid()}" for suffix in ("new", "old"))
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    try:
        write(fresh)
        if out.exists():
            out.rename(old)
        fresh.rename(out)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def run_train_classifier(settings: TrainClassifierSettings) -> dict[str, Any]:
    from tokenmill.pipeline.quality.train import TrainingSettings, read_texts, train_classifier

    check_train_classifier(settings)
    texts: dict[str, list[str]] = {"positive": [], "negative": []}
    inputs: dict[str, list[dict[str, Any]]] = {"positive": [], "negative": []}
    for name, datasets in (("positive", settings.positive), ("negative", settings.negative)):
        for dataset in datasets:
            found, files = read_texts(dataset, settings.text_column, settings.s3)
            texts[name] += found
            inputs[name] += [dataclasses.asdict(file) for file in files]
    training = TrainingSettings(
        **{spec.name: getattr(settings, spec.name) for spec in dataclasses.fields(TrainingSettings)}
    )
    classifier, card = train_classifier(texts["positive"], texts["negative"], training)
    card = {**card, "inputs": inputs, "text_column": settings.text_column, "command": settings.command_line()}

    def write(directory: Path) -> None:
        classifier.model.save_model(str(directory / MODEL_FILE))
        (directory / CARD_FILE).write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")

    _write_atomically(Path(settings.output), write)
    metrics = card["heldout"]
    print(
        f"{settings.output}: held-out ROC AUC {metrics['roc_auc']:.4f}, precision {metrics['precision']}, "
        f"recall {metrics['recall']:.4f} ({metrics['positives']} positive, {metrics['negatives']} negative)"
    )
    return {key: metrics[key] for key in ("roc_auc", "precision", "recall", "positives", "negatives")}
