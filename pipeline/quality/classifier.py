"""A quality classifier: a fastText supervised model plus the card that says how it was trained.

A model directory holds `model.bin` (fastText's format, quantized or not) and `card.json` (written by
train.py: the positive label, the inputs, the settings and the held-out metrics). `normalize` is the one
text form the model ever sees, at training and at scoring time, so a score never depends on how a page
happened to be spaced or cased.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import numpy as np

from tokenmill.pipeline.errors import UserError

DEMO_MODEL = Path(__file__).parent / "models" / "demo"  # from a zip, resolve_model("demo") copies it out
MODEL_FILE, CARD_FILE = "model.bin", "card.json"

# Words and punctuation marks as separate tokens: fastText splits on whitespace only, so without this
# "quality." and "quality" would be two unrelated words, and a small training set learns neither well.
_TOKEN = re.compile(r"\w+|[^\w\s]")
# fastText reports exp(log(p + 1e-5)), so a probability of 1 comes back as 1.00001.
_FASTTEXT_OFFSET = 1e-5
NORMALIZATION = "lowercased; words and punctuation marks separated by single spaces"  # for the card


def normalize(text: str) -> str:
    """Lowercased, words and punctuation marks separated by single spaces, on one line (fastText reads
    one example per line). Casing and spacing carry little quality signal at this size and would
    otherwise split every word's counts."""
    return " ".join(_TOKEN.findall(text.lower()))


def on_disk(resource: Traversable) -> Path:
    """A path fastText can open for a packaged file or directory of files: itself when the package is
    installed as files; when the code runs from a zip (spark-submit --py-files), a copy in the temporary
    directory, under a name made of the content's hash, so processes share one copy and a partly
    written one is never seen."""
    if isinstance(resource, Path):
        return resource
    files = sorted(resource.iterdir(), key=lambda file: file.name) if resource.is_dir() else [resource]
    contents = {file.name: file.read_bytes() for file in files}
    digest = hashlib.sha256(b"".join(name.encode() + data for name, data in contents.items())).hexdigest()
    copy = Path(tempfile.gettempdir()) / "tokenmill-resources" / digest[:32]
    for name, data in contents.items():
        if not (copy / name).is_file():
            copy.mkdir(parents=True, exist_ok=True)
            partial = copy / f".{name}.{os.getpid()}"
            partial.write_bytes(data)
            partial.replace(copy / name)
    return copy if resource.is_dir() else copy / resource.name


def resolve_model(name_or_path: str | Path) -> Path:
    """`demo` names the shipped demonstration model; anything else is a model directory's path."""
    demo = resources.files("tokenmill.pipeline.quality") / "models" / "demo"
    path = on_disk(demo) if str(name_or_path) == "demo" else Path(name_or_path)
    if not (path / MODEL_FILE).is_file() or not (path / CARD_FILE).is_file():
        raise UserError(
            f"{name_or_path} is not a quality model: give `demo` or a `tokenmill train-classifier` -o "
            f"directory (it holds {MODEL_FILE} and {CARD_FILE})"
        )
    return path


class QualityClassifier:
    """Scores texts with the probability of the model's positive label."""

    def __init__(self, model: Any, label: str):
        if label not in model.labels:
            raise UserError(f"the model has no label {label}; its labels are {', '.join(model.labels)}")
        self.model = model
        self.label = label

    @classmethod
    def load(cls, model_dir: str | Path, label: str | None = None) -> QualityClassifier:
        """The model of `model_dir` (or `demo`), scoring `label`: by default its card's positive label."""
        import fasttext

        path = resolve_model(model_dir)
        card = json.loads((path / CARD_FILE).read_text(encoding="utf-8"))
        return cls(fasttext.load_model(str(path / MODEL_FILE)), label or card["label"])

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive label) of each text (float64), in one batched predict over the normalized texts.
        Every label is asked for, so the positive one is there whatever its rank."""
        if not texts:
            return np.zeros(0)
        labels, probs = self.model.predict([normalize(text) for text in texts], k=-1, threshold=0.0)
        reported = [dict(zip(row, p, strict=True))[self.label] for row, p in zip(labels, probs, strict=True)]
        return np.clip(np.array(reported, dtype=np.float64) - _FASTTEXT_OFFSET, 0.0, 1.0)
