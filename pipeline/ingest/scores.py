"""Model scores as columns: each classifier a recipe names gives every kept document `score_<name>`.

A score is the classifier's probability of the entry's label (float64). Models load once per Python
worker process, whatever the number of units, recipes or labels that use them (Spark reuses workers
across tasks), and each classifier scores a row group of kept documents in one batched predict.
Dropped documents (`--keep-removed`) have the columns too, null: they were never scored.
"""

from __future__ import annotations

from tokenmill.pipeline.quality.classifier import QualityClassifier, resolve_model
from tokenmill.pipeline.recipe import RecipeClassifier

_LOADED: dict[str, QualityClassifier] = {}  # model path -> the classifier loaded from it


def load_classifier(model: str, label: str) -> QualityClassifier:
    """The classifier of `model` (`demo` or a MODEL_DIR) scoring `label`, loaded once per process."""
    path = str(resolve_model(model))
    if path not in _LOADED:
        _LOADED[path] = QualityClassifier.load(path)
    loaded = _LOADED[path]
    return loaded if loaded.label == label else QualityClassifier(loaded.model, label)


class DocumentScores:
    """The score columns of a recipe's classifiers, set on a batch of rows (a row group's kept ones)."""

    def __init__(self, classifiers: list[RecipeClassifier]):
        self.classifiers = {entry.column: load_classifier(entry.model, entry.label) for entry in classifiers}

    @property
    def columns(self) -> list[str]:
        return list(self.classifiers)

    def add_to(self, rows: list[dict[str, object]]) -> None:
        """Set each classifier's column on every row, from one predict per classifier over their texts."""
        texts = [str(row["text"]) for row in rows]
        for column, classifier in self.classifiers.items():
            for row, score in zip(rows, classifier.scores(texts), strict=True):
                row[column] = float(score)
