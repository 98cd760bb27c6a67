"""The cluster path: a Spark standalone master and two workers on 127.0.0.1 (Spark's own Master and
Worker through spark-class), the packed environment and code zip from infra/pack.py, the whole pipeline
through infra/submit.sh (spark-submit --master spark://...) with input and output on the moto S3 server:
output identical to the local[2] run on local disk."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from tests.conftest import WARC_DIR
from tests.test_s3_pipeline import assert_same_run, mirror
from tokenmill.jobs import cli

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
INPUTS = [str(WARC_DIR / "dolma-sample-0000.warc.gz"), str(WARC_DIR / "resiliparse-warcfile.warc.gz")]


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
