"""Shared fixtures: real data paths, one local Spark session per test session, one moto S3 server."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
WARC_DIR = DATA / "warc"

# Spark's Python workers inherit the environment of the JVM, which starts before any fixture runs:
# give the process the dummy credentials the local moto server accepts before anything else.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


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


# Markers by what a test uses, so `make test-fast` (-m "not slow and ...") selects the unit tests alone.
_MARKER_OF_FIXTURE = {"spark": "spark", "s3_endpoint": "s3", "chromium": "browser"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for fixture, marker in _MARKER_OF_FIXTURE.items():
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(marker)
