"""Shared fixtures: real data paths, one local Spark session per test session, one moto S3 server, one
Spark standalone cluster (master and two workers)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
WARC_DIR = DATA / "warc"
SPARK_CLASS = Path(sys.executable).parent / "spark-class"

# Spark's Python workers inherit the environment of the JVM, which starts before any fixture runs:
# give the process the dummy credentials the local moto server accepts before anything else.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# The trainer's tests run models of a few thousand parameters: one thread each is as fast as two on an
# idle machine and many times faster on a busy one (thread contention), before torch is first imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server over real HTTP on 127.0.0.1; clients reach it through the endpoint override."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spark():
    """One local[2] Spark session for the whole test run (each start costs seconds)."""
    from tokenmill.jobs.spark.session import build_session

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = build_session("local[2]", app_name="tokenmill-tests")
    yield session
    session.stop()


def _start_spark_class(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
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


@pytest.fixture(scope="session")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[Path]]]:
    """(spark://127.0.0.1:PORT, the workers' work directories): a master and two one-core workers,
    started once per test session (each start costs seconds) and stopped with their executors after."""
    base = tmp_path_factory.mktemp("standalone")
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_LOG_DIR": str(base), "SPARK_NO_DAEMONIZE": "1"}
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)  # spark-class finds pip's Spark through it
    port, webui = _free_port(), _free_port()
    master_url = f"spark://127.0.0.1:{port}"
    processes = [
        _start_spark_class(
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
        processes.append(_start_spark_class(args, base / f"worker-{index}.log", env))
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
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


# Markers by what a test uses, so `make test-fast` (-m "not slow and ...") selects the unit tests alone.
_MARKER_OF_FIXTURE = {"spark": "spark", "s3_endpoint": "s3", "chromium": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in _MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
