"""`tokenmill select`: the exact top fraction of a known distribution, ties split by id, documents
without a score counted, equal-count quality buckets, --min-score, every document accounted for, the
completion marker, and a user's mistakes caught before Spark."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenmill.jobs.stages.select import SelectSettings, check_select, run_select
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.report import render
from tokenmill.pipeline.select import (
    BELOW_THRESHOLD,
    BUCKET_COLUMN,
    NO_SCORE,
    bucket_boundaries,
    bucket_edges,
    histogram_edges,
    top_count,
)
from tokenmill.pipeline.storage import S3Options

DOCS = 10_000
BY = "score_demo"


def _write_documents(directory: Path, scores: list[float | None], seed: int, files: int = 4) -> None:
    """Documents as dedup leaves them, split over several files: shuffled ids, so that id order says
    nothing about score order."""
    rng = np.random.default_rng(seed)
    ids = [f"<urn:uuid:{number:08d}>" for number in rng.permutation(len(scores))]
    table = pa.table(
        {
            "text": [f"document {doc_id}" for doc_id in ids],
            "id": ids,
            "dump": ["CC-MAIN-2024-10"] * len(ids),
            BY: pa.array(scores, pa.float64()),
        }
    )
    directory.mkdir(parents=True)
    step = math.ceil(len(scores) / files)
    for index in range(files):
        pq.write_table(table.slice(index * step, step), directory / f"part-{index}.parquet")


def _documents(directory: Path) -> list[dict]:
    return pq.read_table(directory).to_pylist()


def _ranked(documents: list[dict]) -> list[dict]:
    """The selection order, independently: scored documents by score descending, then id ascending."""
    scored = [doc for doc in documents if doc[BY] is not None and not math.isnan(doc[BY])]
    return sorted(scored, key=lambda doc: (-doc[BY], doc["id"]))


def _select(root: Path, spark, **rule) -> dict:
    return run_select(spark, SelectSettings(output=str(root), by=BY, **rule))


@pytest.fixture(scope="module")
def normal_root(tmp_path_factory) -> Path:
    """10,000 documents, scores drawn from a seeded standard normal: no ties, no missing score."""
    root = tmp_path_factory.mktemp("normal")
    scores = np.random.default_rng(13).normal(size=DOCS).tolist()
    _write_documents(root / "final", scores, seed=1)
    return root


@pytest.fixture(scope="module")
def tied_root(tmp_path_factory) -> Path:
    """10,000 documents, uniform scores rounded to one decimal (11 values, ~900 documents each), 300
    with no score and 100 with NaN."""
    root = tmp_path_factory.mktemp("tied")
    scores: list[float | None] = np.round(np.random.default_rng(7).uniform(size=DOCS), 1).tolist()
    scores[:300] = [None] * 300
    scores[300:400] = [math.nan] * 100
    _write_documents(root / "final", scores, seed=2)
    return root


# ---- the rule, without Spark --------------------------------------------------------------------------


def test_top_count_rounds_to_the_nearest_document():
    assert top_count(0.1, 10_000) == 1_000  # 0.1 * 10,000 is 1000.0000000000001 in floats
    assert top_count(0.25, 2) == 1 and top_count(0.25, 6) == 2  # halves up: 0.5 -> 1, 1.5 -> 2
    assert top_count(0.1, 4) == 0 and top_count(1.0, 7) == 7 and top_count(0.3, 0) == 0


@pytest.mark.parametrize("kept, buckets", [(2400, 4), (1000, 3), (10, 7), (2, 5), (1, 1), (0, 3)])
def test_bucket_boundaries_cut_equal_counts(kept, buckets):
    boundaries = bucket_boundaries(kept, buckets)
    assert boundaries == sorted(boundaries) and all(0 < rank < kept for rank in boundaries)
    # a boundary left out (past the last kept rank) starts an empty bucket
    sizes = np.diff([0, *boundaries, *[kept] * (buckets - len(boundaries))])
    assert len(sizes) == buckets and sizes.sum() == kept
    assert set(sizes) <= {kept // buckets, -(-kept // buckets)}


def test_bucket_edges_name_each_buckets_highest_score():
    assert bucket_edges([0.9, 0.5, 0.2], 4) == [0.2, 0.5, 0.9]  # boundaries come best first
    assert bucket_edges([], 3) == [None, None]  # one kept document: buckets 0 and 1 are empty
    assert bucket_edges([0.7], 3) == [None, 0.7]


def test_histogram_edges_cover_a_single_value():
    assert histogram_edges(0.0, 1.0, 4) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert histogram_edges(3.0, 3.0, 2) == [3.0, 3.5, 4.0]


@pytest.mark.parametrize(
    "rule, expected",
    [
        ({}, "exactly one of --keep-top"),
        ({"keep_top": 0.1, "min_score": 0.5}, "exactly one of --keep-top"),
        ({"keep_top": 0.0}, "--keep-top 0.0"),
        ({"keep_top": 1.5}, "--keep-top 1.5"),
        ({"min_score": math.inf}, "--min-score inf"),
        ({"keep_top": 0.1, "buckets": 0}, "--buckets 0"),
    ],
)
def test_a_bad_rule_is_a_user_error(rule, expected, tmp_path):
    with pytest.raises(UserError, match=expected.replace("+", r"\+")):
        SelectSettings(output=str(tmp_path), by=BY, **rule)


def test_by_is_required(tmp_path):
    with pytest.raises(UserError, match="give --by score_<name>"):
        SelectSettings(output=str(tmp_path), keep_top=0.1)


def test_input_mistakes_are_caught_before_spark(tmp_path, normal_root):
    def check(**fields) -> None:
        check_select(SelectSettings(output=str(tmp_path / "out"), keep_top=0.1, **fields))

    with pytest.raises(UserError, match="no Parquet files under .*run `tokenmill dedup` first"):
        check(by=BY)
    source = str(normal_root / "final")
    with pytest.raises(UserError, match="--by dump: select ranks by a score column, named score_<name>"):
        check(by="dump", input=source)
    with pytest.raises(UserError, match="has no column score_edu .its score columns: score_demo."):
        check(by="score_edu", input=source)
    pq.write_table(pa.table({"id": ["a"], "score_text": ["high"]}), tmp_path / "strings.parquet")
    with pytest.raises(UserError, match="score_text is string, not a number"):
        check(by="score_text", input=str(tmp_path / "strings.parquet"))
    pq.write_table(pa.table({"score_demo": [0.5]}), tmp_path / "no-ids.parquet")
    with pytest.raises(UserError, match="no id column"):
        check(by=BY, input=str(tmp_path / "no-ids.parquet"))
    with pytest.raises(UserError, match="overlap"):
        check(by=BY, input=str(tmp_path / "out" / "selected" / "part.parquet"))


# ---- select on Spark ----------------------------------------------------------------------------------


def test_keep_top_keeps_exactly_the_fraction_of_a_normal_distribution(spark, normal_root):
    stats = _select(normal_root, spark, keep_top=0.1)
    ranked = _ranked(_documents(normal_root / "final"))
    expected = ranked[:1_000]
    selected = _documents(normal_root / "selected")
    assert len(selected) == stats["kept"] == 1_000 and stats["achieved_fraction"] == 0.1
    assert {doc["id"] for doc in selected} == {doc["id"] for doc in expected}
    assert stats["quantile_error_documents"] == 0 and stats["threshold"] == expected[-1][BY]
    assert abs(stats["threshold"] - 1.2816) < 0.06  # the normal's 90th percentile, ~3.5 sampling sd
    assert stats["removed"] == {NO_SCORE: 0, BELOW_THRESHOLD: 9_000} and stats["balanced"]
    assert list(selected[0]) == ["text", "id", "dump", BY]  # the input's columns, no bucket asked
    histogram = stats["histogram"]
    assert sum(histogram["kept"]) == 1_000 and sum(histogram["removed"]) == 9_000
    assert len(histogram["edges"]) == 51 and histogram["edges"][0] == ranked[-1][BY]
    assert json.loads((normal_root / "stats" / "select.json").read_text()) == stats


@pytest.fixture(scope="module")
def tied_stats(spark, tied_root) -> dict:
    return _select(tied_root, spark, keep_top=0.25, buckets=4)


def test_ties_are_split_by_id_and_missing_scores_counted(tied_stats, tied_root):
    stats = tied_stats
    ranked = _ranked(_documents(tied_root / "final"))
    assert len(ranked) == 9_600
    expected = ranked[:2_400]  # 0.25 of the 9,600 scored documents
    selected = {doc["id"]: doc for doc in _documents(tied_root / "selected")}
    assert set(selected) == {doc["id"] for doc in expected}
    threshold = expected[-1][BY]
    at_threshold = [doc for doc in ranked if doc[BY] == threshold]
    assert 0 < stats["threshold_ties"]["kept"] < stats["threshold_ties"]["documents"] == len(at_threshold)
    assert stats["threshold_ties"]["kept"] == sum(doc["id"] in selected for doc in at_threshold)
    assert stats["removed"] == {NO_SCORE: 400, BELOW_THRESHOLD: 7_200}
    assert stats["docs_in"] == DOCS == stats["kept"] + sum(stats["removed"].values())
    # equal-count buckets by rank: the best 600 are bucket 3, the next 600 bucket 2, ...
    for rank, doc in enumerate(expected):
        assert selected[doc["id"]][BUCKET_COLUMN] == 3 - rank // 600, rank
    assert stats["bucket_sizes"] == [600] * 4
    assert stats["bucket_edges"] == [expected[rank][BY] for rank in (1_800, 1_200, 600)]


def test_min_score_keeps_every_document_at_or_above_it(spark, normal_root, tmp_path):
    root = tmp_path / "root"
    stats = run_select(
        spark,
        SelectSettings(output=str(root), input=str(normal_root / "final"), by=BY, min_score=0.5, buckets=3),
    )
    documents = _documents(normal_root / "final")
    reaching = {doc["id"] for doc in documents if doc[BY] >= 0.5}
    selected = _documents(root / "selected")
    assert {doc["id"] for doc in selected} == reaching and stats["kept"] == len(reaching)
    assert stats["threshold"] == 0.5 and stats["requested_fraction"] is None
    assert stats["achieved_fraction"] == len(reaching) / DOCS
    sizes = stats["bucket_sizes"]
    assert sum(sizes) == len(reaching) and max(sizes) - min(sizes) <= 1
    by_bucket = [[doc[BY] for doc in selected if doc[BUCKET_COLUMN] == b] for b in range(3)]
    assert [len(scores) for scores in by_bucket] == sizes
    assert max(by_bucket[0]) <= min(by_bucket[1]) and max(by_bucket[1]) <= min(by_bucket[2])


def test_a_rerun_does_nothing_and_a_change_recomputes(spark, tmp_path, normal_root, capsys):
    settings = SelectSettings(output=str(tmp_path), input=str(normal_root / "final"), by=BY, keep_top=0.05)
    first = run_select(spark, settings)
    selected = tmp_path / "selected"
    before = {path.name: path.stat().st_mtime_ns for path in selected.iterdir()}
    assert "_COMPLETE.json" in before
    capsys.readouterr()
    assert run_select(spark, settings) == first
    assert "nothing to do" in capsys.readouterr().out
    assert before == {path.name: path.stat().st_mtime_ns for path in selected.iterdir()}
    changed = run_select(
        spark, SelectSettings(output=str(tmp_path), input=str(normal_root / "final"), by=BY, keep_top=0.2)
    )
    assert changed["kept"] == len(_documents(selected)) == 2_000
    assert "nothing to do" not in capsys.readouterr().out


def test_the_report_draws_the_selection(tied_stats, tied_root):
    selection = re.search(r'<section id="select">(.*?)</section>', render(str(tied_root), S3Options()), re.S)
    tips = re.findall(r"<rect [^>]*><title>[^<]*: ([\d,]+) (kept|removed)</title></rect>", selection.group(1))
    drawn = {"kept": 0, "removed": 0}
    for count, group in tips:
        drawn[group] += int(count.replace(",", ""))
    assert drawn == {"kept": tied_stats["kept"], "removed": tied_stats["removed"][BELOW_THRESHOLD]}
    assert f"threshold (--keep-top 0.25) = {tied_stats['threshold']:g}" in selection.group(1)
