"""The ingest job end to end on local[2]: real WARC/WET files, S3 over HTTP, manifests, resume, corrupt
input, and the accounting identity on every unit."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from tests.conftest import WARC_DIR
from tokenmill.jobs import cli
from tokenmill.pipeline.ingest.output import FINEWEB_COLUMNS
from tokenmill.pipeline.ingest.sources import unit_name
from tokenmill.pipeline.ingest.unit import IngestJob, process_unit, unit_paths
from tokenmill.pipeline.recipe import load_recipe

REAL_INPUTS = [
    WARC_DIR / "resiliparse-warcfile.warc.gz",  # genuine CC-MAIN-2020-34, CJK charsets
    WARC_DIR / "whirlwind.warc.gz",  # CC-MAIN-2024-22
    WARC_DIR / "jwarc-cc.warc.gz",
    WARC_DIR / "dolma-sample-0000.warc.gz",  # modern English HTML
    WARC_DIR / "aut-example.warc.gz",  # WARC 0.17, non-HTML, 404s, exact duplicates
    WARC_DIR / "resiliparse-clueweb-quirk.warc.gz",  # WARC 0.18, EUC-JP
    WARC_DIR / "josimtext-cc-test.warc.gz",  # no HTTP headers, single gzip member
    WARC_DIR / "jeffharwell-filter_test_1.wet.gz",  # WET, single gzip member
    WARC_DIR / "crate-example.wet.gz",
    WARC_DIR / "derived" / "cc2008-arc-sample-1213893279526_0.converted.warc.gz",
]


def _ingest(*args: str) -> int:
    return cli.main(["ingest", *args])


def _unit_stats(root: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((root / "stats" / "units").glob("*.json"))]


def _assert_balanced(units: list[dict]) -> None:
    for unit in units:
        accounted = unit["kept"] + sum(unit["dropped"].values()) + sum(unit["errors"].values())
        assert unit["records"] == accounted, unit["unit"]


def _visible_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.glob("*") if not path.name.startswith((".", "_")))


@pytest.fixture(scope="module")
def local_run(spark, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ingest") / "out"
    assert (
        _ingest(
            *map(str, REAL_INPUTS),
            "-o",
            str(root),
            "--dump",
            "test-dump",
            "--master",
            "local[2]",
            "--keep-removed",
        )
        == 0
    )
    return root


def test_every_unit_balances_and_is_committed(local_run):
    units = _unit_stats(local_run)
    assert len(units) == len(REAL_INPUTS)
    _assert_balanced(units)
    for path in REAL_INPUTS:
        unit = unit_name(str(path))
        assert (local_run / "markers" / f"{unit}.done").exists()
        assert (local_run / "documents" / f"{unit}.parquet").exists()
    summary = json.loads((local_run / "stats" / "ingest.json").read_text())
    assert summary["records"] == sum(unit["records"] for unit in units)
    assert summary["unbalanced_units"] == [] and summary["failed_units"] == []
    assert list((local_run / "runs").glob("ingest-*.json"))


def test_known_record_counts_per_file(local_run):
    by_path = {Path(unit["path"]).name: unit for unit in _unit_stats(local_run)}
    resiliparse = by_path["resiliparse-warcfile.warc.gz"]
    assert resiliparse["records"] == 50  # 1 warcinfo + 17 request + 16 response + 16 metadata
    assert resiliparse["html_responses"] == 16
    assert resiliparse["dropped"]["read:request_record"] == 17
    assert resiliparse["dropped"]["read:metadata_record"] == 16
    wet = by_path["jeffharwell-filter_test_1.wet.gz"]
    assert wet["records"] == 26 and wet["html_responses"] == 25
    aut = by_path["aut-example.warc.gz"]
    assert aut["dropped"]["read:not_html"] == 299 - aut["html_responses"]


def test_documents_have_fineweb_columns_first_and_pass_the_recipe(local_run):
    table = pads.dataset(str(local_run / "documents"), format="parquet").to_table()
    assert table.column_names[: len(FINEWEB_COLUMNS)] == [name for name, _ in FINEWEB_COLUMNS]
    rows = table.to_pylist()
    assert len(rows) == sum(unit["kept"] for unit in _unit_stats(local_run)) > 20
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        assert row["language"] == "en" and row["language_score"] > 0.65
        assert row["dump"] == "test-dump" and row["text"].strip()
        assert row["gopher_q_n_non_symbol_words"] >= 50


def test_removed_documents_carry_their_reason(local_run):
    removed = pads.dataset(str(local_run / "removed"), format="parquet").to_table().to_pylist()
    units = _unit_stats(local_run)
    document_stages = (
        "url",
        "decode",
        "extract",
        "language",
        "gopher_repetition",
        "gopher_quality",
        "c4",
        "fineweb_quality",
    )
    expected = sum(
        count
        for unit in units
        for reason, count in unit["dropped"].items()
        if reason.split(":")[0] in document_stages
    )
    assert len(removed) == expected
    assert {row["drop_stage"] for row in removed} >= {"language", "extract"}
    non_english = [row for row in removed if row["drop_stage"] == "language"]
    assert any(row["language"] == "zh" for row in non_english)  # the CJK CC pages, decoded correctly
    assert any(row["language"] == "ja" for row in non_english)  # EUC-JP ClueWeb pages


def test_the_2008_arc_file_keeps_the_same_pages_as_its_warc_conversion(spark, local_run, tmp_path):
    arc = WARC_DIR / "copycat-cc2008-small-sample-1213893279526_0.arc.gz"
    root = tmp_path / "out"
    assert _ingest(str(arc), "-o", str(root)) == 0
    (unit,) = _unit_stats(root)
    _assert_balanced([unit])
    converted = WARC_DIR / "derived" / "cc2008-arc-sample-1213893279526_0.converted.warc.gz"
    from_warc = pq.read_table(local_run / "documents" / f"{unit_name(str(converted))}.parquet")
    from_arc = pq.read_table(root / "documents" / f"{unit_name(str(arc))}.parquet")
    assert sorted(from_arc.column("url").to_pylist()) == sorted(from_warc.column("url").to_pylist())
    assert from_arc.num_rows > 0


def test_rerun_skips_completed_units_and_changes_nothing(local_run, capsys):
    before = {path.name: path.read_bytes() for path in _visible_files(local_run / "documents")}
    assert _ingest(*map(str, REAL_INPUTS), "-o", str(local_run), "--dump", "test-dump", "--keep-removed") == 0
    assert f"{len(REAL_INPUTS)} already complete, 0 to process" in capsys.readouterr().out
    after = {path.name: path.read_bytes() for path in _visible_files(local_run / "documents")}
    assert after == before


def test_crash_mid_unit_leaves_nothing_visible_and_rerun_completes(tmp_path, monkeypatch):
    from tokenmill.pipeline.ingest import unit as ingest

    source = WARC_DIR / "dolma-sample-0000.warc.gz"
    job = IngestJob(root=str(tmp_path / "out"), recipe=load_recipe("fineweb"))
    calls = {"n": 0}
    original = ingest.DocumentPipeline.process

    def crash_after_five(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # stands in for a killed task
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ingest.DocumentPipeline, "process", crash_after_five)
    with pytest.raises(KeyboardInterrupt):
        process_unit(str(source), job)
    paths = unit_paths(job.root, unit_name(str(source)))
    assert not any(Path(path).exists() for path in paths.values())
    assert not list((tmp_path / "out").rglob("*.parquet"))

    monkeypatch.setattr(ingest.DocumentPipeline, "process", original)
    stats = process_unit(str(source), job)
    assert stats.balanced and stats.kept > 0
    assert pq.read_table(paths["documents"]).num_rows == stats.kept


def test_killed_job_resumes_without_duplicates(spark, tmp_path):
    """SIGKILL a real `tokenmill ingest` process mid-run, then rerun: every unit once, ids unique."""
    inputs = [str(path) for path in REAL_INPUTS[3:6] + REAL_INPUTS[9:]]
    root = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "tokenmill.jobs.cli",
        "ingest",
        *inputs,
        "-o",
        str(root),
        "--master",
        "local[1]",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((root / "markers").glob("*.done")):
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    markers = {path.stem for path in (root / "markers").glob("*.done")}
    assert 0 < len(markers) < len(inputs), "the kill should land between units"
    for path in _visible_files(root / "documents"):
        assert path.stem in markers  # no visible output without its completion marker

    assert _ingest(*inputs, "-o", str(root)) == 0
    units = _unit_stats(root)
    assert len(units) == len(inputs)
    _assert_balanced(units)
    table = pads.dataset(str(root / "documents"), format="parquet").to_table(columns=["id"])
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == sum(unit["kept"] for unit in units)


def test_corrupt_and_truncated_files_beside_good_ones(spark, tmp_path):
    good = WARC_DIR / "dolma-sample-0001.warc.gz"
    data = good.read_bytes()
    truncated = tmp_path / "truncated.warc.gz"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    garbage = tmp_path / "garbage.warc.gz"
    garbage.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(5000))
    root = tmp_path / "out"
    assert _ingest(str(good), str(truncated), str(garbage), "-o", str(root)) == 0
    units = {Path(unit["path"]).name: unit for unit in _unit_stats(root)}
    _assert_balanced(units.values())
    assert units["truncated.warc.gz"]["kept"] > 0
    assert sum(units["truncated.warc.gz"]["errors"].values()) == 1
    assert sum(units["garbage.warc.gz"]["errors"].values()) == 1
    assert units["dolma-sample-0001.warc.gz"]["errors"] == {}


def test_manifest_of_relative_keys(spark, tmp_path):
    """A Common Crawl style manifest: keys relative to a base, gzipped."""
    base = tmp_path / "bucket"
    key = "crawl-data/CC-MAIN-2024-22/segments/1/warc/whirlwind.warc.gz"
    (base / key).parent.mkdir(parents=True)
    shutil.copy(WARC_DIR / "whirlwind.warc.gz", base / key)
    manifest = tmp_path / "warc.paths.gz"
    manifest.write_bytes(gzip.compress(f"{key}\n".encode()))
    root = tmp_path / "out"
    assert _ingest(str(manifest), "-o", str(root), "--cc-base", f"{base}/", "--keep-removed") == 0
    (unit,) = _unit_stats(root)
    assert unit["path"].endswith(key) and unit["html_responses"] == 1
    removed = pq.read_table(next((root / "removed").glob("*.parquet")))
    assert removed.column("dump").to_pylist() == ["CC-MAIN-2024-22"]  # inferred from the path


def test_reads_from_and_writes_to_s3(spark, s3_endpoint, local_run):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="crawl")
    inputs = [REAL_INPUTS[0], REAL_INPUTS[3]]
    for path in inputs:
        s3.upload_file(str(path), "crawl", f"crawl-data/test/{path.name}")
    manifest = gzip.compress("".join(f"crawl-data/test/{path.name}\n" for path in inputs).encode())
    s3.put_object(Bucket="crawl", Key="crawl-data/test/warc.paths.gz", Body=manifest)

    root = "s3://crawl/out"
    assert (
        _ingest(
            "s3://crawl/crawl-data/test/warc.paths.gz",
            "-o",
            root,
            "--cc-base",
            "s3://crawl/",
            "--s3-endpoint",
            s3_endpoint,
            "--master",
            "local[2]",
        )
        == 0
    )
    keys = sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket="crawl", Prefix="out/")["Contents"])
    assert "out/stats/ingest.json" in keys
    assert sum(key.startswith("out/markers/") for key in keys) == 2
    document_keys = [key for key in keys if key.startswith("out/documents/")]
    s3_ids = set()
    for key in document_keys:
        body = s3.get_object(Bucket="crawl", Key=key)["Body"].read()
        s3_ids |= set(pq.read_table(pa_buffer(body)).column("id").to_pylist())
    local_ids = set()
    for path in inputs:
        table = pq.read_table(local_run / "documents" / f"{unit_name(str(path))}.parquet", columns=["id"])
        local_ids |= set(table.column("id").to_pylist())
    assert s3_ids == local_ids and s3_ids


def pa_buffer(body: bytes):
    import pyarrow as pa

    return pa.BufferReader(body)


@pytest.mark.spark
def test_spark_submit_entry_point(tmp_path):
    """`spark-submit jobs/ingest.py` runs the same job as `tokenmill ingest`."""
    spark_submit = Path(sys.executable).parent / "spark-submit"
    root = tmp_path / "out"
    source = WARC_DIR / "dolma-sample-0001.warc.gz"
    environment = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    result = subprocess.run(
        [str(spark_submit), "--master", "local[1]", "jobs/ingest.py", str(source), "-o", str(root)],
        cwd=Path(__file__).parent.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "records read" in result.stdout
    (unit,) = _unit_stats(root)
    assert unit["kept"] > 0 and unit["path"] == str(source)


def test_a_rewritten_input_is_ingested_again(spark, s3_endpoint, tmp_path, capsys):
    """A unit's marker holds the version of its input's content (size and mtime locally, size and ETag
    on S3, from one listing per folder): the same name with new content is not "already complete"."""
    local = tmp_path / "in" / "crawl.warc.gz"
    local.parent.mkdir()
    shutil.copy(WARC_DIR / "dolma-sample-0000.warc.gz", local)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="rewritten-in")
    client.upload_file(str(local), "rewritten-in", "crawl/crawl.warc.gz")
    runs = {
        "local": ["ingest", str(local), "-o", str(tmp_path / "local-out")],
        "s3": [
            "ingest",
            "s3://rewritten-in/crawl/",
            "-o",
            str(tmp_path / "s3-out"),
            "--s3-endpoint",
            s3_endpoint,
        ],
    }

    def ingest(name: str) -> str:
        assert cli.main([*runs[name], "--limit", "30", "--master", "local[2]"]) == 0
        return capsys.readouterr().out

    for name in runs:
        assert "0 already complete, 1 to process" in ingest(name)
        assert "1 already complete, 0 to process" in ingest(name)
    shutil.copy(WARC_DIR / "dolma-sample-0001.warc.gz", local)
    client.upload_file(str(local), "rewritten-in", "crawl/crawl.warc.gz")
    for name in runs:
        assert "0 already complete, 1 to process" in ingest(name)


_PIPELINES_SEEN: list[object] = []  # in each Python worker: kept alive, so no two get the same id()


def _pipeline_in_worker(_: int) -> tuple[int, int]:
    """Executor side: this Python worker's process id and the pipeline the ingest tasks there use."""
    from tokenmill.pipeline.ingest import unit

    _PIPELINES_SEEN.append(unit._pipeline_for(load_recipe("fineweb"), False))
    return os.getpid(), id(_PIPELINES_SEEN[-1])


def test_python_workers_are_reused_and_build_the_pipeline_once(spark):
    """The language model load and the extractor's fork are paid once per Python worker: Spark reuses
    the workers across tasks, and each keeps one pipeline per recipe."""
    pairs = spark.sparkContext.parallelize(range(8), numSlices=8).map(_pipeline_in_worker).collect()
    pipelines: dict[int, set[int]] = {}
    for pid, pipeline in pairs:
        pipelines.setdefault(pid, set()).add(pipeline)
    assert len(pipelines) < len(pairs)  # 8 tasks ran in fewer processes than tasks
    assert all(len(built) == 1 for built in pipelines.values())
