"""Outputs that are never stale, never delete what tokenmill did not write, and have one writer per root.

Real components throughout: `tokenmill` commands in process on the shared local[2] session and as
separate `python -m tokenmill.jobs.cli` processes killed with SIGKILL at several points, the moto S3
server over HTTP for the S3 lock, and the WARCs and Common Crawl texts in tests/data.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import DATA, WARC_DIR
from tests.faults import wait_for
from tokenmill.jobs import cli
from tokenmill.jobs.spark.datasets import RECORD_NAME, read_record
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.lock import LOCK_NAME, RootLock, lock_file
from tokenmill.pipeline.storage import S3Options

DEDUP_OUTPUTS = ("dedup/clusters", "dedup/bands", "final")
LOCAL = S3Options()


# ---- helpers ------------------------------------------------------------------------------------------


def _documents(path: Path) -> Path:
    """20 real Common Crawl documents, each twice (an exact copy under another id), in four files."""
    rows = []
    for name in ("dolma_cc_en_head-0091.jsonl.gz", "dolma_cc_en_head-0174.jsonl.gz"):
        with gzip.open(DATA / "text" / name, "rt", encoding="utf-8") as handle:
            rows += [json.loads(line)["text"] for line in handle]
    docs = [{"id": f"cc-{i:02d}", "text": text} for i, text in enumerate(rows)]
    docs += [{"id": f"copy-{i:02d}", "text": text + " "} for i, text in enumerate(rows)]
    docs[0]["text"] += " Mail jane.doe@example.com or call +1 (415) 555-0132."
    path.mkdir(parents=True)
    for index in range(4):
        pq.write_table(pa.Table.from_pylist(docs[index::4]), path / f"docs-{index}.parquet")
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokenmill.jobs.cli", *args]


def _start(*args: str) -> subprocess.Popen:
    """A real `tokenmill` process in its own process group, so that SIGKILL reaches Spark's JVM too."""
    return subprocess.Popen(
        _cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def _all_files(root: Path) -> list[str]:
    """Every file under root, hidden ones included, relative."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def _table(path: Path) -> list[dict]:
    return sorted(pq.read_table(path).to_pylist(), key=lambda row: row["id"])


def _new_part(directory: Path, before: set[Path]) -> bool:
    return any(path.name.startswith("part-") for path in set(directory.iterdir()) - before)


def _committed(root: Path, dataset: str) -> list[str]:
    """The parts a dataset's commit record lists, after checking that they, the record and nothing else
    are in its directory."""
    record = read_record(str(root / dataset), LOCAL)
    assert record is not None
    present = sorted(path.name for path in (root / dataset).iterdir())
    assert present == sorted([RECORD_NAME, *record.parts]), f"{dataset} holds files no record lists"
    return record.parts


def _committed_rows(root: Path, dataset: str) -> list[dict]:
    """The rows of the parts the dataset's record lists: what a reader sees."""
    parts = read_record(str(root / dataset), LOCAL).parts
    tables = [pq.read_table(root / dataset / part) for part in parts]
    return sorted(pa.concat_tables(tables).to_pylist(), key=lambda row: row["id"])


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


# ---- 1. nothing deleted that tokenmill did not write ----------------------------------------------------


def test_scrub_refuses_outputs_that_are_not_its_own(spark, tmp_path, capsys):
    source = _documents(tmp_path / "docs")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("not tokenmill's")

    def refused(*args: str) -> str:
        assert cli.main(["scrub", *args, "--master", "local[2]"]) == cli.EXIT_USER_ERROR
        return _one_line(capsys.readouterr().err)

    assert "is not empty and is not an earlier output of `tokenmill scrub`" in refused(
        "--input", str(source), "-o", str(notes)
    )
    assert "is the input itself" in refused("--input", str(source), "-o", str(source))
    assert "overlap" in refused("--input", str(source), "-o", str(source / "scrubbed"))
    assert "overlap" in refused("--input", str(source / "docs-0.parquet"), "-o", str(source))
    assert (notes / "thesis.txt").read_text() == "not tokenmill's"
    assert sorted(path.name for path in source.iterdir()) == [f"docs-{i}.parquet" for i in range(4)]


def test_dedup_refuses_a_root_whose_final_is_not_its_own(spark, tmp_path, capsys):
    source = _documents(tmp_path / "docs")
    (tmp_path / "root" / "final").mkdir(parents=True)
    (tmp_path / "root" / "final" / "keep.parquet").write_bytes(b"someone else's")
    args = ["dedup", "-o", str(tmp_path / "root"), "--input", str(source), "--master", "local[2]"]
    assert cli.main(args) == cli.EXIT_USER_ERROR
    assert "final is not empty and is not an earlier output of `tokenmill dedup`" in _one_line(
        capsys.readouterr().err
    )
    assert (tmp_path / "root" / "final" / "keep.parquet").read_bytes() == b"someone else's"
    other = str(tmp_path / "other")
    assert cli.main(["dedup", "-o", other, "--input", other, "--master", "local[2]"]) == cli.EXIT_USER_ERROR
    assert "overlap" in _one_line(capsys.readouterr().err)  # ROOT holds final/, dedup/


# ---- 2. kill -9 of dedup, and a second writer --------------------------------------------------------


@pytest.fixture(scope="module")
def clean_dedup(spark, tmp_path_factory) -> tuple[Path, Path]:
    """(input, root) of an uninterrupted `tokenmill dedup` process; while it runs, a second one into
    the same root must fail at once with a one-line error naming the holder and --force."""
    base = tmp_path_factory.mktemp("clean")
    source, root = _documents(base / "docs"), base / "root"
    first = _start("dedup", "-o", str(root), "--input", str(source), "--master", "local[2]")
    wait_for((root / LOCK_NAME).is_file, first, "the lock")
    started = time.monotonic()
    second = subprocess.run(
        _cli("dedup", "-o", str(root), "--input", str(source), "--master", "local[2]"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = _one_line(second.stderr)
    assert second.returncode == cli.EXIT_USER_ERROR, second.stderr
    assert line.startswith("tokenmill dedup: error: ") and "is locked by another run" in line
    assert socket.gethostname() in line and f"pid {first.pid}" in line and "--force" in line
    assert time.monotonic() - started < 60  # refused before Spark starts
    assert first.wait(timeout=600) == 0, first.communicate()
    assert not (root / LOCK_NAME).exists()
    return source, root


KILL_POINTS = {
    "keys computed: a new clusters part": "dedup/clusters",
    "clusters swapped: a new bands part": "dedup/bands",
    "bands swapped: a new final part": "final",
}


@pytest.mark.slow
def test_killed_dedup_reruns_to_the_clean_result(clean_dedup, tmp_path):
    """A root deduplicated with --phones, then rerun without it and SIGKILLed at several points: after
    each kill the old marker is gone and every dataset reads whole; a last rerun equals a clean run,
    with no stray file (parts, temp files, lock) left."""
    source, clean = clean_dedup
    root = tmp_path / "root"
    args = ["dedup", "-o", str(root), "--input", str(source), "--master", "local[2]"]
    assert cli.main([*args, "--phones"]) == 0
    with_phones = _table(root / "final")
    assert with_phones != _table(clean / "final")  # the phone number: another version to replace
    for point, dataset in KILL_POINTS.items():
        before = set((root / dataset).iterdir())
        process = _start(*args)
        wait_for(functools.partial(_new_part, root / dataset, before), process, point)
        _kill(process)
        assert not (root / "dedup" / "_COMPLETE.json").exists(), f"killed at {point}: the old marker survived"
        assert (root / LOCK_NAME).is_file()  # left by the killed run; the next run takes it over
        for name in DEDUP_OUTPUTS:
            parts = read_record(str(root / name), LOCAL).parts
            assert all((root / name / part).is_file() for part in parts), f"{name} lost a committed part"
        assert _committed_rows(root, "final") in (with_phones, _table(clean / "final"))  # one version

    assert cli.main(args) == 0
    for name in DEDUP_OUTPUTS:
        _committed(root, name)
        assert _table(root / name) == _table(clean / name)
    assert [name for name in _all_files(root) if "/." in f"/{name}" or LOCK_NAME in name] == []
    assert len(_all_files(root)) == len(_all_files(clean)) + 1  # the --phones run's record in runs/


@pytest.mark.slow
def test_scrub_works_on_dedups_final(clean_dedup, tmp_path, capsys):
    _, root = clean_dedup
    out = tmp_path / "scrubbed"
    args = ["scrub", "--input", str(root / "final"), "-o", str(out), "--phones", "--master", "local[2]"]
    assert cli.main(args) == 0
    final, scrubbed = pq.read_table(root / "final"), pq.read_table(out)
    assert scrubbed.column_names == final.column_names  # pii_* recounted in place, not added twice
    assert [row["id"] for row in _table(out)] == [row["id"] for row in _table(root / "final")]
    copied = {row["id"]: row for row in _table(out)}
    assert "555-0132" not in copied["cc-00"]["text"] and copied["cc-00"]["pii_phone"] == 1
    assert cli.main(args) == 0
    assert "already scrubbed" in capsys.readouterr().out


# ---- 3. one lock per root -----------------------------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def where(request, s3_endpoint, tmp_path) -> tuple[str, S3Options]:
    if request.param == "local":
        return str(tmp_path / "root"), LOCAL
    bucket = "tokenmill-locks"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    if bucket not in [entry["Name"] for entry in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=bucket)
    return f"s3://{bucket}/{request.node.name}", S3Options(endpoint_url=s3_endpoint)


def _holder(root: str, s3: S3Options) -> dict:
    held = lock_file(root, s3).read()
    assert held is not None
    return json.loads(held[0])


def test_a_second_process_into_a_locked_root_fails_fast(where):
    root, s3 = where
    with RootLock(root, s3, "tokenmill dedup -o ROOT"):
        holder = _holder(root, s3)
        assert {"owner", "host", "pid", "command", "started", "heartbeat"} <= set(holder)
        args = ["dedup", "-o", root] + (["--s3-endpoint", s3.endpoint_url] if s3.endpoint_url else [])
        result = subprocess.run(_cli(*args), capture_output=True, text=True, timeout=120)
        assert result.returncode == cli.EXIT_USER_ERROR
        line = _one_line(result.stderr)
        assert f"{holder['owner']}@{holder['host']} pid {os.getpid()}" in line
        assert f"started {holder['started']}" in line and "--force" in line
    assert lock_file(root, s3).read() is None  # released


def _plant(root: str, s3: S3Options, host: str, heartbeat_age: timedelta) -> None:
    beat = datetime.now(timezone.utc) - heartbeat_age
    record = {"owner": "someone", "host": host, "pid": 1, "command": "tokenmill run", "started": "x"}
    record.update(heartbeat=beat.isoformat(), token="planted")
    assert lock_file(root, s3).create(json.dumps(record).encode()) is not None


def test_stale_locks_are_taken_over_and_force_takes_any(where):
    root, s3 = where
    _plant(root, s3, "another-host", timedelta(seconds=5))
    with pytest.raises(UserError, match=r"locked by another run \(someone@another-host pid 1"):
        RootLock(root, s3, "tokenmill run").acquire()
    with RootLock(root, s3, "tokenmill run", force=True) as forced:
        assert _holder(root, s3)["token"] == forced.token
    _plant(root, s3, "another-host", timedelta(hours=1))  # heartbeat stopped an hour ago
    with RootLock(root, s3, "tokenmill run") as taken:
        assert _holder(root, s3)["token"] == taken.token
    _plant(root, s3, socket.gethostname(), timedelta(seconds=0))  # this host, pid 1 is not ours to signal
    with pytest.raises(UserError, match="locked by another run"):
        RootLock(root, s3, "tokenmill run").acquire()


def test_heartbeat_refreshes_and_notices_a_forced_takeover(where):
    root, s3 = where
    holder = RootLock(root, s3, "tokenmill run", heartbeat_seconds=0.2)
    holder.acquire()
    first = _holder(root, s3)["heartbeat"]
    time.sleep(1)
    assert _holder(root, s3)["heartbeat"] > first  # refreshed
    with RootLock(root, s3, "tokenmill run --force", force=True):
        time.sleep(1)
        assert holder.lost
        with pytest.raises(UserError, match="another run took the lock"):
            holder.__exit__(None, None, None)
        assert _holder(root, s3)["command"] == "tokenmill run --force"  # the loser left it alone
    assert lock_file(root, s3).read() is None


# ---- 4. nothing stale: `tokenmill run` reruns exactly what changed ------------------------------------


def _snapshot(root: Path) -> dict:
    manifest = json.loads((root / "tokens" / "gpt2" / "manifest.json").read_text())
    shards = sorted((root / "tokens" / "gpt2").glob("*_0*.*"))
    return {
        "final_ids": sorted(pq.read_table(root / "final").column("id").to_pylist()),
        "shards": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in shards},
        "manifest_shards": [entry["sha256"] for entry in manifest["shards"]],
    }


def _mtimes(root: Path) -> dict[str, int]:
    folders = ("documents", "markers", "dedup", "final", "tokens")
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for folder in folders
        for path in (root / folder).rglob("*")
        if path.is_file()
    }


@pytest.mark.slow
def test_run_reruns_what_changed_and_nothing_else(spark, tmp_path, capsys):
    root = tmp_path / "root"
    warc = str(WARC_DIR / "dolma-sample-0000.warc.gz")

    def run(*extra: str) -> dict:
        assert cli.main(["run", warc, "-o", str(root), "--no-report", "--master", "local[2]", *extra]) == 0
        for name in DEDUP_OUTPUTS:
            _committed(root, name)
        return _snapshot(root)

    trial = run("--limit", "40")
    full = run()
    assert len(trial["final_ids"]) < len(full["final_ids"])  # not "already complete" with old documents
    assert full["shards"] != trial["shards"] and full["manifest_shards"] != trial["manifest_shards"]

    capsys.readouterr()
    before = _mtimes(root)
    assert run() == full
    assert _mtimes(root) == before  # nothing rewritten
    out = capsys.readouterr().out
    assert "0 to process" in out and out.count("nothing to do") == 2

    strict = run("--set", "gopher_quality.min_doc_words=400")
    assert len(strict["final_ids"]) < len(full["final_ids"]) and strict["shards"] != full["shards"]
    assert run() == full  # back to the default recipe: the same documents and byte-identical shards
