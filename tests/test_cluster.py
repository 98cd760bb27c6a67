"""The cluster path: a Spark standalone master and two workers on 127.0.0.1 (Spark's own Master and
Worker through spark-class), the packed environment and code zip from infra/pack.py, the whole pipeline
through infra/submit.sh (spark-submit --master spark://...) with input and output on the moto S3 server:
output identical to the local[2] run on local disk."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from tests.conftest import WARC_DIR, _free_port
from tests.test_s3_pipeline import assert_same_run, mirror
from tokenmill.jobs import cli

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
SPARK_CLASS = Path(sys.executable).parent / "spark-class"
INPUTS = [str(WARC_DIR / "dolma-sample-0000.warc.gz"), str(WARC_DIR / "resiliparse-warcfile.warc.gz")]


def _start(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [str(SPARK_CLASS), *args], stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _alive_workers(webui: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{webui}/json/", timeout=5) as response:
            return int(json.load(response).get("aliveworkers", 0))
    except OSError:
        return 0


@pytest.fixture(scope="module")
def standalone(tmp_path_factory):
    """spark://127.0.0.1:PORT with two one-core workers; stopped (with their executors) afterwards."""
    base = tmp_path_factory.mktemp("standalone")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(base), "SPARK_NO_DAEMONIZE": "1"}
    port, webui = _free_port(), _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    processes = [
        _start(
            ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port)]
            + ["--webui-port", str(webui)],
            base / "master.log",
            env,
        )
    ]
    work_dirs = [base / f"worker-{index}" for index in range(2)]
    for index, work in enumerate(work_dirs):
        args = ["org.apache.spark.deploy.worker.Worker", master_url, "--host", "127.0.0.1", "--cores", "1"]
        args += ["--memory", "2g", "--webui-port", str(_free_port()), "--work-dir", str(work)]
        processes.append(_start(args, base / f"worker-{index}.log", env))
    try:
        deadline = time.monotonic() + 120
        while _alive_workers(webui) < 2:
            if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                logs = "\n".join(path.read_text()[-1500:] for path in sorted(base.glob("*.log")))
                pytest.fail(f"the standalone cluster did not come up:\n{logs}")
            time.sleep(1)
        yield master_url, work_dirs
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def test_whole_pipeline_on_a_standalone_cluster_with_s3_equals_local(
    standalone, spark, s3_endpoint, tmp_path, capsys
):
    master_url, work_dirs = standalone
    started = time.perf_counter()
    local = tmp_path / "local"
    assert (
        cli.main(["run", *INPUTS, "-o", str(local), "--dump", "t", "--master", "local[2]", "--no-report"])
        == 0
    )
    local_seconds = time.perf_counter() - started

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    for bucket in ("cluster-in", "cluster-out"):
        client.create_bucket(Bucket=bucket)
    for path in INPUTS:
        client.upload_file(path, "cluster-in", f"crawl/{Path(path).name}")
    env = {**os.environ, "TOKENMILL_BUILD": str(tmp_path / "build"), "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("PYSPARK_PYTHON", None)  # executors must take the packed environment's interpreter
    submit = [str(REPO / "infra" / "submit.sh"), "--master", master_url, "--conf", "spark.executor.memory=1g"]
    started = time.perf_counter()
    result = subprocess.run(
        [*submit, "run", "s3://cluster-in/crawl/", "-o", "s3://cluster-out/run", "--s3-endpoint", s3_endpoint]
        + ["--dump", "t", "--no-report"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    cluster_seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with capsys.disabled():
        print(
            f"\n[cluster] local[2] {local_seconds:.1f} s, standalone 2 workers on S3 {cluster_seconds:.1f} s"
        )

    # the executors (two, of one app) ran the packed environment, unpacked in their work directories
    unpacked = [path for work in work_dirs for path in work.glob("app-*/*/environment/pyvenv.cfg")]
    assert len({path.parents[2].name for path in unpacked}) == 1 and len(unpacked) >= 2
    assert_same_run(local, mirror(client, "cluster-out", "run", tmp_path / "cluster"))
