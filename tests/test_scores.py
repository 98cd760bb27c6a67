"""Classifier scores as ingest columns: `score_<name>` on kept documents equals the classifier's own score
of the same text, removed documents have it null, a recipe without classifiers writes what it always
wrote, and a model loads once per process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import WARC_DIR
from tokenmill.jobs import cli
from tokenmill.pipeline.ingest import scores, unit
from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.output import DocumentWriter, document_schema
from tokenmill.pipeline.ingest.unit import IngestJob, process_unit
from tokenmill.pipeline.quality.classifier import DEMO_MODEL, QualityClassifier
from tokenmill.pipeline.recipe import load_recipe
from tokenmill.pipeline.storage import S3Options

WARC = WARC_DIR / "dolma-sample-0000.warc.gz"  # modern English HTML: 48 records, 15 kept by FineWeb
DEMO_ENTRY = '[[classifiers]]\nname = "demo"\nmodel = "demo"\n'
LQ_ENTRY = '[[classifiers]]\nname = "lq"\nmodel = "demo"\nlabel = "__label__lq"\n'  # the other label


def _scored_recipe(path: Path, classifiers: str = DEMO_ENTRY) -> str:
    """A recipe file that extends fineweb and names classifiers."""
    path.write_text(f'extends = "fineweb"\n{classifiers}')
    return str(path)


def _only_file(directory: Path) -> Path:
    (path,) = directory.glob("*.parquet")
    return path


@pytest.fixture(scope="module")
def demo() -> QualityClassifier:
    return QualityClassifier.load(DEMO_MODEL)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> dict[str, Path]:
    """The first 30 records of a real WARC through process_unit, with the demo classifier and without
    one, --keep-removed."""
    base = tmp_path_factory.mktemp("scores")
    recipes = {"plain": load_recipe("fineweb"), "scored": load_recipe(_scored_recipe(base / "scored.toml"))}
    for name, recipe in recipes.items():
        process_unit(str(WARC), IngestJob(root=str(base / name), recipe=recipe, keep_removed=True, limit=30))
    return {name: base / name for name in recipes}


def test_kept_documents_score_what_the_classifier_scores(ingested, demo):
    documents = pq.read_table(_only_file(ingested["scored"] / "documents"))
    assert documents.num_rows == 10
    assert documents.schema.field("score_demo").type == "double"
    expected = demo.scores(documents["text"].to_pylist())
    assert np.array_equal(documents["score_demo"].to_numpy(), expected)
    assert expected.min() < 0.5 < expected.max()  # a real spread, not one constant


def test_removed_documents_have_the_column_null(ingested):
    removed = pq.read_table(_only_file(ingested["scored"] / "removed"))
    assert removed.num_rows > 0
    assert removed["score_demo"].null_count == removed.num_rows
    assert removed.schema.names[-3:] == ["score_demo", "drop_stage", "drop_reason"]


def test_without_classifiers_ingest_writes_what_it_always_wrote(ingested):
    for folder, with_drop_reason in [("documents", False), ("removed", True)]:
        plain = pq.read_table(_only_file(ingested["plain"] / folder))
        scored = pq.read_table(_only_file(ingested["scored"] / folder))
        assert plain.schema == document_schema(with_drop_reason)
        assert scored.drop_columns(["score_demo"]).equals(plain)


def test_row_groups_score_in_batches_with_the_same_result(ingested, demo, tmp_path):
    texts = pq.read_table(_only_file(ingested["plain"] / "documents"), columns=["text"])["text"].to_pylist()
    output = tmp_path / "documents.parquet"
    classifiers = load_recipe(_scored_recipe(tmp_path / "scored.toml")).classifiers
    writer = DocumentWriter(
        str(output), S3Options(), scores=scores.DocumentScores(classifiers), row_group_size=4
    )
    for number, text in enumerate(texts):
        writer.add(Document(id=str(number), text=text, url="https://example.com/", date="", file_path=""))
    writer.commit()
    written = pq.ParquetFile(output)
    assert written.metadata.num_row_groups == 3  # 10 documents in groups of 4
    assert np.array_equal(written.read()["score_demo"].to_numpy(), demo.scores(texts))


def test_a_model_loads_once_per_process_whatever_uses_it(tmp_path, monkeypatch):
    """Two recipes (two pipelines) scoring the two labels of one model, three units: one load. A fresh
    process is simulated by emptying the per-process caches."""
    loads: list[str] = []
    real_load = QualityClassifier.load.__func__

    def counting_load(cls, model_dir):
        loads.append(str(model_dir))
        return real_load(cls, model_dir)

    monkeypatch.setattr(QualityClassifier, "load", classmethod(counting_load))
    monkeypatch.setattr(scores, "_LOADED", {})
    monkeypatch.setattr(unit, "_PIPELINES", {})
    hq = load_recipe(_scored_recipe(tmp_path / "hq.toml"))
    lq = load_recipe(_scored_recipe(tmp_path / "lq.toml", LQ_ENTRY))
    units = [(hq, WARC), (hq, WARC_DIR / "dolma-sample-0001.warc.gz"), (lq, WARC)]
    for number, (recipe, path) in enumerate(units):
        process_unit(str(path), IngestJob(root=str(tmp_path / str(number)), recipe=recipe, limit=20))
    assert loads == [str(DEMO_MODEL)]
    positive = pq.read_table(_only_file(tmp_path / "0" / "documents"))
    negative = pq.read_table(_only_file(tmp_path / "2" / "documents"))
    assert positive["text"].equals(negative["text"]) and positive.num_rows > 0
    assert np.allclose(negative["score_lq"].to_numpy(), 1 - positive["score_demo"].to_numpy(), atol=1e-4)


def test_the_ingest_job_writes_scores_and_records_the_classifier(spark, tmp_path, demo):
    """`tokenmill ingest` on local[2] with a recipe file that extends fineweb and names the demo model."""
    root = tmp_path / "out"
    recipe = _scored_recipe(tmp_path / "scored.toml")
    argv = [
        "ingest",
        str(WARC),
        "-o",
        str(root),
        "--recipe",
        recipe,
        "--master",
        "local[2]",
        "--keep-removed",
    ]
    assert cli.main(argv) == 0
    documents = pq.read_table(_only_file(root / "documents"))
    assert documents.num_rows == 15
    assert np.array_equal(documents["score_demo"].to_numpy(), demo.scores(documents["text"].to_pylist()))
    removed = pq.read_table(_only_file(root / "removed"))
    assert removed["score_demo"].null_count == removed.num_rows > 0
    (run_record,) = (root / "runs").glob("ingest-*.json")
    (classifier,) = json.loads(run_record.read_text())["recipe"]["classifiers"]
    assert (classifier["name"], classifier["model"], classifier["label"]) == ("demo", "demo", "__label__hq")
