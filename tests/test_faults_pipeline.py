"""The whole pipeline under real faults: `tokenmill run` with S3 roots behind a fault-injecting proxy
(tests/faults.py), kill -9 of the `tokenmill run` process at several stages, of one Python worker and
of one executor JVM. Each run, after its faults (and a rerun where the process died), must equal one
clean run: the same final ids, the same token shards (sha256 in manifest.json), and no stray file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest

from tests.conftest import WARC_DIR
from tests.faults import Fault, FaultProxy, wait_for
from tests.test_s3_pipeline import mirror
from tokenmill.jobs import cli
from tokenmill.jobs.spark.datasets import RECORD_NAME
from tokenmill.pipeline.lock import LOCK_NAME

pytestmark = pytest.mark.faults

INPUTS = ["dolma-sample-0000.warc.gz", "resiliparse-warcfile.warc.gz"]
IN_BUCKET, OUT_BUCKET = "faults-in", "faults-out"
CRAWL = f"s3://{IN_BUCKET}/crawl/"
# Small shards, so that tokenize writes several and a kill can land between them.
COMMON = ["--dump", "t", "--no-report", "--shard-tokens", "2000"]
EVERY_METHOD = ("GET", "HEAD", "PUT", "POST", "DELETE")
PART = re.compile(r"part-[0-9T]+-[0-9a-f]+-\d+\.parquet")
RUN_RECORD = re.compile(r"runs/([a-z-]+)-\d{8}T\d{6}\.json")
SHARD = re.compile(r"(val|train)_\d{6}\.(bin|idx|parquet)")


# ---- the comparison -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What a run must leave whatever happened on the way: its final ids, its token shards (names and
    sha256 from the manifest), and the names of its other files: part files left out (their names hold
    a run id; `outcome` checks them against their records), run records by stage (their names hold
    the time)."""

    final_ids: list[str]
    shards: list[dict]
    files: list[str]


def _datasets(root: Path) -> list[Path]:
    return sorted(record.parent for record in root.rglob(RECORD_NAME))


def outcome(root: Path) -> Outcome:
    """The outcome of a finished run root on local disk, after checking that it holds no stray file:
    nothing hidden (a temporary file), no lock, no part file that its dataset's record does not list,
    no shard file that the manifest does not list."""
    files = sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())
    assert not [name for name in files if "/." in f"/{name}"], "hidden (temporary) files left"
    assert LOCK_NAME not in files, "the lock was not released"
    final_ids: list[str] = []
    for dataset in _datasets(root):
        record = json.loads((dataset / RECORD_NAME).read_text())
        present = sorted(path.name for path in dataset.iterdir())
        assert present == sorted([RECORD_NAME, *record["parts"]]), f"{dataset}: parts no record lists"
        assert record["pending"] == [] and record["retired"] == []
        if dataset == root / "final":
            final_ids = sorted(
                doc_id
                for part in record["parts"]
                for doc_id in pq.read_table(dataset / part, columns=["id"]).column("id").to_pylist()
            )
    tokens = root / "tokens" / "gpt2"
    manifest = json.loads((tokens / "manifest.json").read_text())
    listed = {entry[kind] for entry in manifest["shards"] for kind in ("bin", "idx", "parquet")}
    assert {path.name for path in tokens.iterdir()} == listed | {"manifest.json"}, "shards not listed"
    others = {RUN_RECORD.sub(r"runs/\1", name) for name in files if PART.search(name) is None}
    return Outcome(final_ids, manifest["shards"], sorted(others))


def assert_same_outcome(clean: Outcome, root: Path) -> None:
    found = outcome(root)
    assert found.final_ids == clean.final_ids
    assert found.shards == clean.shards
    assert found.files == clean.files


# ---- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3(s3_endpoint: str):
    """The two WARCs under s3://faults-in/crawl/ and an empty output bucket; returns a plain client."""
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for bucket in (IN_BUCKET, OUT_BUCKET):
        client.create_bucket(Bucket=bucket)
    for name in INPUTS:
        client.upload_file(str(WARC_DIR / name), IN_BUCKET, f"crawl/{name}")
    return client


def _run_args(root: str, endpoint: str, master: str = "local[2]") -> list[str]:
    return ["run", CRAWL, "-o", root, "--s3-endpoint", endpoint, "--master", master, *COMMON]


def _run_on_s3(name: str, endpoint: str) -> int:
    return cli.main(_run_args(f"s3://{OUT_BUCKET}/{name}", endpoint))


@pytest.fixture(scope="module")
def clean_root(spark, s3, s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted run with its root on S3, copied to local disk with plain boto3."""
    assert _run_on_s3("clean", s3_endpoint) == 0
    return mirror(s3, OUT_BUCKET, "clean", tmp_path_factory.mktemp("clean"))


@pytest.fixture(scope="module")
def clean(clean_root: Path) -> Outcome:
    """What every faulty run must equal."""
    found = outcome(clean_root)
    assert len(found.final_ids) > 10 and len(found.shards) > 3
    return found


def _stray_hidden_file(root: Path) -> None:
    (root / "final" / ".part-20260101T000000-0000000a-00003.parquet.0123456789ab.tmp").write_bytes(b"PAR1")


def _stray_part(root: Path) -> None:
    committed = next((root / "final").glob("part-*.parquet"))
    (root / "final" / "part-20260101T000000-0000000a-00003.parquet").write_bytes(committed.read_bytes())


def _lock_left(root: Path) -> None:
    (root / LOCK_NAME).write_text("{}")


def _shard_changed(root: Path) -> None:
    manifest = json.loads((root / "tokens" / "gpt2" / "manifest.json").read_text())
    manifest["shards"][1]["sha256"]["bin"] = "0" * 64
    (root / "tokens" / "gpt2" / "manifest.json").write_text(json.dumps(manifest))


def _document_lost(root: Path) -> None:
    part = next((root / "final").glob("part-*.parquet"))
    table = pq.read_table(part)
    pq.write_table(table.slice(1), part)


def _stats_left(root: Path) -> None:
    (root / "stats" / "units" / "another-0123abcd.json").write_text("{}")


@pytest.mark.parametrize(
    "damage", [_stray_hidden_file, _stray_part, _lock_left, _shard_changed, _document_lost, _stats_left]
)
def test_the_comparison_sees_what_a_fault_could_leave(damage, clean_root, clean, tmp_path):
    """The comparison with the clean run is what the fault tests rest on: it passes for the clean
    run's own copy and fails for each kind of damage."""
    copy = tmp_path / "copy"
    shutil.copytree(clean_root, copy)
    assert_same_outcome(clean, copy)
    damage(copy)
    with pytest.raises(AssertionError):
        assert_same_outcome(clean, copy)


# ---- 1. proxy faults on every request of a run with S3 roots ------------------------------------------


PROXY_FAULTS = {
    "throttle": Fault("throttle", fraction=0.2, methods=EVERY_METHOD),  # S3's 503 SlowDown
    "cut": Fault("cut", fraction=0.3),  # GETs: listings, markers, Parquet footers and pages, WARCs
    "delay": Fault("delay", fraction=0.05, seconds=1.0, methods=EVERY_METHOD),
}


@pytest.mark.parametrize("kind", PROXY_FAULTS)
def test_run_on_s3_through_a_faulty_network_equals_the_clean_run(
    kind, spark, s3, s3_endpoint, clean, tmp_path
):
    """Every request of `tokenmill run` (driver and tasks, reads, writes, the lock) goes through the
    proxy: retries and resumed reads make the faults invisible in the result."""
    with FaultProxy(s3_endpoint, PROXY_FAULTS[kind], max_requests=20000, lifetime_s=600) as proxy:
        assert _run_on_s3(f"proxied-{kind}", proxy.url) == 0
    assert proxy.injected[kind] > 0
    assert_same_outcome(clean, mirror(s3, OUT_BUCKET, f"proxied-{kind}", tmp_path))


# ---- processes ----------------------------------------------------------------------------------------


def _start_run(root: Path, endpoint: str, log: Path, master: str = "local[2]") -> subprocess.Popen:
    """A real `tokenmill run` process in its own process group (so a SIGKILL of the group reaches its
    JVM and Python workers too), its output in `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tokenmill.jobs.cli", *_run_args(str(root), endpoint, master)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill_run(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process, from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended while listed
            continue
        parent = int(stat[stat.rindex(")") + 2 :].split()[1])  # after "pid (comm) state"
        found[int(entry.name)] = (parent, cmdline)
    return found


def _python_workers(ancestor: int) -> list[int]:
    """Spark's Python workers under `ancestor`: the children forked by a `pyspark.daemon`."""
    table = _processes()

    def descends(pid: int) -> bool:
        while pid in table and pid != ancestor:
            pid = table[pid][0]
        return pid == ancestor

    return [
        pid
        for pid, (parent, _) in table.items()
        if parent in table and "pyspark.daemon" in table[parent][1] and descends(pid)
    ]


# ---- 2. kill -9 of `tokenmill run` at each stage, then reruns -----------------------------------------


def _shard_written(directory: Path) -> bool:
    return directory.is_dir() and any(SHARD.fullmatch(path.name) for path in directory.iterdir())


@pytest.mark.slow
def test_run_killed_in_each_stage_reruns_to_the_clean_result(spark, s3, s3_endpoint, clean, tmp_path):
    """SIGKILL a `tokenmill run` process group in ingest (a unit committed), in dedup (its clusters
    dataset begun) and in tokenize (a shard written), each kill in the rerun of the one before: a last
    rerun equals the clean run, with nothing left of the killed runs."""
    root, log = tmp_path / "root", tmp_path / "run.log"
    points: dict[str, tuple[Callable[[], bool], str]] = {
        "ingest": (lambda: any((root / "markers").glob("*.done")), "dedup"),
        "dedup": ((root / "dedup" / "clusters").exists, "dedup/_COMPLETE.json"),
        "tokenize": (lambda: _shard_written(root / "tokens" / "gpt2"), "tokens/gpt2/manifest.json"),
    }
    for stage, (reached, not_yet) in points.items():
        process = _start_run(root, s3_endpoint, log)
        wait_for(reached, process, f"{stage} is under way", log)
        _kill_run(process)
        assert (root / LOCK_NAME).is_file()  # left by the killed run; the next one takes it over
        assert not (root / not_yet).exists(), f"the kill in {stage} came too late"
    assert cli.main(_run_args(str(root), s3_endpoint)) == 0
    assert_same_outcome(clean, root)


# ---- 3. kill -9 of one Python worker, of one executor JVM ---------------------------------------------


def _task_lost_in_ingest(log: Path) -> bool:
    """Whether Spark logged a lost task (which it then ran again) before dedup began."""
    text = log.read_text()
    return 0 <= text.find("Lost task") < text.find("run: tokenmill dedup")


@pytest.mark.slow
def test_a_python_worker_killed_in_ingest_is_retried(spark, s3, s3_endpoint, clean, tmp_path):
    """local[2,3] allows each task 3 attempts: a worker SIGKILLed while it ingests a unit costs one."""
    root, log = tmp_path / "root", tmp_path / "run.log"
    process = _start_run(root, s3_endpoint, log, master="local[2,3]")

    def ingesting() -> bool:  # workers up and no unit committed yet: each worker holds a unit's task
        return _python_workers(process.pid) != [] and not any((root / "markers").glob("*.done"))

    wait_for(ingesting, process, "Python workers ingesting", log)
    for worker in _python_workers(process.pid):
        os.kill(worker, signal.SIGKILL)
    assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert _task_lost_in_ingest(log) and "Python worker exited unexpectedly" in log.read_text()
    assert_same_outcome(clean, root)


def _executors(work_dirs: list[Path]) -> list[int]:
    """The executor JVMs the standalone workers started (their working directories lie in the work
    directories), leaving out any other cluster's on this machine."""
    found = []
    for pid, (_, cmdline) in _processes().items():
        if "CoarseGrainedExecutorBackend" not in cmdline:
            continue
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
        except OSError:
            continue
        if any(work in cwd.parents for work in work_dirs):
            found.append(pid)
    return found


@pytest.mark.slow
@pytest.mark.cluster
def test_an_executor_killed_in_ingest_on_a_standalone_cluster(
    standalone, spark, s3, s3_endpoint, clean, tmp_path
):
    """Two one-core workers; the executor that runs a unit is SIGKILLed: its task runs again on the
    other executor (or on the one the master starts instead) and the run equals the clean run."""
    master_url, work_dirs = standalone
    root, log = tmp_path / "root", tmp_path / "run.log"
    process = _start_run(root, s3_endpoint, log, master=master_url)

    def busy_executors() -> list[int]:
        return [pid for pid in _executors(work_dirs) if _python_workers(pid)]

    wait_for(lambda: busy_executors() != [], process, "an executor running a task", log)
    os.kill(busy_executors()[0], signal.SIGKILL)
    assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
    assert _task_lost_in_ingest(log)
    assert_same_outcome(clean, root)
