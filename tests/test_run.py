"""`tokenmill run` end to end on local[2]: a crawl picked from a collinfo.json index with local WARCs
standing in for the bucket, the next crawl deduplicated against it, every stage resumable (a rerun
does nothing), and the report written."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import WARC_DIR
from tokenmill.jobs import cli
from tokenmill.jobs.stages import run

OLDER, NEWER = "CC-MAIN-2024-10", "CC-MAIN-2024-18"
# The crawls' WARCs: the newer crawl sees the older one's pages again, plus new ones.
CRAWL_FILES = {
    OLDER: ["dolma-sample-0000.warc.gz"],
    NEWER: ["dolma-sample-0000.warc.gz", "dolma-sample-0001.warc.gz"],
}


def _bucket(base: Path) -> Path:
    """A Common Crawl bucket layout: crawl-data/<crawl>/warc.paths.gz listing keys under segments/."""
    for crawl, files in CRAWL_FILES.items():
        keys = []
        for number, name in enumerate(files):
            key = f"crawl-data/{crawl}/segments/1700000000000.{number}/warc/{crawl}-0000{number}.warc.gz"
            (base / key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(WARC_DIR / name, base / key)
            keys.append(key)
        with gzip.open(base / "crawl-data" / crawl / "warc.paths.gz", "wt") as manifest:
            manifest.write("\n".join(keys) + "\n")
    return base


def _index(path: Path) -> Path:
    entries = [
        {"id": NEWER, "name": "April 2024 Index", "from": "2024-04-12T00:00:00", "to": "2024-04-25T00:00:00"},
        {
            "id": OLDER,
            "name": "February/March 2024 Index",
            "from": "2024-02-20T00:00:00",
            "to": "2024-03-05T00:00:00",
        },
    ]
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture(scope="module")
def crawl_runs(spark, tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    bucket, index, root = _bucket(base / "bucket"), _index(base / "collinfo.json"), base / "root"
    common = ["-o", str(root), "--index", str(index), "--cc-base", f"{bucket}/", "--master", "local[2]"]
    assert cli.main(["run", "--crawl", OLDER, *common]) == 0
    assert cli.main(["run", "--crawl", "latest", *common]) == 0
    return root, common


def test_each_crawl_gets_its_own_complete_root(crawl_runs):
    root, _ = crawl_runs
    for crawl in (OLDER, NEWER):
        crawl_root = root / "crawls" / crawl
        manifest = json.loads((crawl_root / "tokens" / "gpt2" / "manifest.json").read_text())
        final = pq.read_table(crawl_root / "final")
        assert manifest["counts"]["documents"] == final.num_rows
        assert set(final.column("dump").to_pylist()) == {crawl}
        assert (crawl_root / "report.html").is_file()


def test_the_newer_crawl_never_readmits_the_older_crawls_documents(crawl_runs):
    root, _ = crawl_runs
    older = pq.read_table(root / "crawls" / OLDER / "final").column("text").to_pylist()
    newer = pq.read_table(root / "crawls" / NEWER / "final").column("text").to_pylist()
    stats = json.loads((root / "crawls" / NEWER / "stats" / "dedup.json").read_text())
    assert stats["against"] == [str(root / "crawls" / OLDER)]
    assert stats["prior_duplicates"] >= len(older) > 0
    assert not set(older) & set(newer) and newer


def test_a_processed_crawl_is_not_run_again(crawl_runs, capsys):
    _, common = crawl_runs
    assert cli.main(["run", "--crawl", "latest", *common]) == 0
    assert "already processed" in capsys.readouterr().out


def test_rerun_of_a_finished_run_skips_every_stage(crawl_runs, capsys):
    root, _ = crawl_runs
    crawl_root = root / "crawls" / OLDER
    record = json.loads(next((crawl_root / "runs").glob("ingest-*.json")).read_text())
    before = {path: path.stat().st_mtime_ns for path in (crawl_root / "tokens" / "gpt2").iterdir()}
    args = ["run", *record["inputs"], "-o", str(crawl_root), "--dump", OLDER, "--master", "local[2]"]
    assert cli.main([*args, "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "0 to process" in out and out.count("nothing to do") == 2  # dedup and tokenize
    assert before == {path: path.stat().st_mtime_ns for path in (crawl_root / "tokens" / "gpt2").iterdir()}


def test_run_needs_inputs_or_a_crawl(tmp_path, capsys):
    assert cli.main(["run", "-o", str(tmp_path)]) == cli.EXIT_USER_ERROR
    assert "give INPUT" in capsys.readouterr().err
    index = str(_index(tmp_path / "i.json"))
    assert cli.main(["run", "--crawl", "CC-MAIN-1999-01", "-o", str(tmp_path), "--index", index]) == 2
    assert "no crawl" in capsys.readouterr().err


def test_run_takes_the_select_options_and_tokenizes_the_selection():
    argv = ["run", str(WARC_DIR / "dolma-sample-0000.warc.gz"), "-o", "root", "--by", "score_demo"]
    namespace = cli.parser().parse_args([*argv, "--keep-top", "0.1", "--buckets", "4"])
    settings = run.pipeline_settings(namespace)
    select = settings.select
    assert (select.by, select.keep_top, select.min_score, select.buckets) == ("score_demo", 0.1, None, 4)
    assert select.output == "root" and select.source == "root/final"
    assert settings.tokenize.source == "root/selected"
    namespace = cli.parser().parse_args([*argv, "--min-score", "0.7"])
    assert run.pipeline_settings(namespace).select.min_score == 0.7
    without = run.pipeline_settings(cli.parser().parse_args(argv[:4]))
    assert without.select is None and without.tokenize.source == "root/final"


@pytest.mark.parametrize(
    "options, expected",
    [
        (["--keep-top", "0.1"], "--keep-top select documents by a score; give --by score_<name> too"),
        (["--by", "score_demo"], "exactly one of --keep-top FRACTION and --min-score X"),
        (["--by", "score_demo", "--keep-top", "2"], "--keep-top 2.0"),
        (
            ["--by", "score_demo", "--keep-top", "0.1"],
            "--by score_demo: the recipe fineweb has no [[classifiers]]",
        ),
    ],
)
def test_run_refuses_a_selection_it_cannot_make(options, expected, tmp_path, capsys):
    warc = str(WARC_DIR / "dolma-sample-0000.warc.gz")
    assert cli.main(["run", warc, "-o", str(tmp_path), *options]) == cli.EXIT_USER_ERROR
    assert expected in capsys.readouterr().err


def test_run_scores_selects_the_top_tenth_and_tokenizes_only_it(spark, tmp_path):
    """The issue's end to end: a recipe naming the demo classifier, then --by score_demo --keep-top 0.1."""
    recipe = tmp_path / "scored.toml"
    recipe.write_text('extends = "fineweb"\n\n[[classifiers]]\nname = "demo"\nmodel = "demo"\n')
    warcs = [str(WARC_DIR / name) for name in ("dolma-sample-0000.warc.gz", "dolma-sample-0001.warc.gz")]
    root = tmp_path / "root"
    command = ["run", *warcs, "-o", str(root), "--recipe", str(recipe), "--by", "score_demo"]
    assert cli.main([*command, "--keep-top", "0.1", "--master", "local[2]", "--no-report"]) == 0
    final = pq.read_table(root / "final", columns=["id", "score_demo"]).to_pylist()
    ranked = sorted(final, key=lambda row: (-row["score_demo"], row["id"]))
    expected = {row["id"] for row in ranked[: round(0.1 * len(final))]}
    selected = pq.read_table(root / "selected", columns=["id"]).column("id").to_pylist()
    assert set(selected) == expected and len(final) >= 20
    stats = json.loads((root / "stats" / "select.json").read_text())
    assert (stats["docs_in"], stats["kept"]) == (len(final), len(expected))
    manifest = json.loads((root / "tokens" / "gpt2" / "manifest.json").read_text())
    assert sum(shard["documents"] for shard in manifest["shards"]) == len(expected)
