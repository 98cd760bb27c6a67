"""Credentials never leave the URI they came in: userinfo and presigned URLs' signatures are read with,
but never logged or stored (documents' file_path, unit stats, run records, stderr)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import WARC_DIR
from tests.faults import serving
from tokenmill.jobs import cli
from tokenmill.jobs.stages.ingest import _process
from tokenmill.pipeline.ingest.unit import IngestJob, process_unit
from tokenmill.pipeline.storage.uri import object_path, redact, redact_text, split_userinfo

USER, PASSWORD = "crawler", "pa55-Secret-7f3a"
ENDPOINT_PASSWORD = "endpoint-Secret-91c2"
CREDENTIAL, SIGNATURE = (
    "AKIAEXAMPLE7Q2%2F20240601%2Fus-east-1%2Fs3%2Faws4_request",
    "9f86d081884c7d659a2feaa0c55ad015",
)
PRESIGNED = (
    f"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={CREDENTIAL}&X-Amz-Date=20240601T000000Z"
    f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={SIGNATURE}"
)
# What must appear nowhere under ROOT nor in any output: the secrets and the parameters that held them.
SECRETS = (PASSWORD, ENDPOINT_PASSWORD, "AKIAEXAMPLE7Q2", SIGNATURE, "X-Amz-Signature", "X-Amz-Credential")


@pytest.mark.parametrize(
    ("uri", "redacted", "path"),
    [
        ("http://user:pass@127.0.0.1:8000/x.warc.gz", "http://127.0.0.1:8000/x.warc.gz", None),
        (
            f"https://b.s3.amazonaws.com/crawl/x.warc.gz?{PRESIGNED}",
            "https://b.s3.amazonaws.com/crawl/x.warc.gz?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Date=20240601T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host",
            "https://b.s3.amazonaws.com/crawl/x.warc.gz",
        ),
        (
            "https://b.s3.amazonaws.com/x?AWSAccessKeyId=AKIA1&Expires=1700000000&Signature=abc%3D",
            "https://b.s3.amazonaws.com/x?Expires=1700000000",
            "https://b.s3.amazonaws.com/x",
        ),
        (
            "https://h/x?X-Amz-Security-Token=t0k&api_key=k&Sig=s&access_token=a&page=2#part",
            "https://h/x?page=2#part",
            "https://h/x",
        ),
        ("https://h/x?token=t&subscription-key=k&client_secret=s&password=p", "https://h/x", None),
        ("http://u:p%40ss@[::1]:9/a.warc", "http://[::1]:9/a.warc", None),
        ("s3://commoncrawl/crawl-data/CC-MAIN-2024-22/x.warc.gz", None, None),
        ("/data/user@host/a.warc.gz?X-Amz-Signature=not-a-query", None, None),
        ("file:///data/a.warc.gz", None, None),
    ],
)
def test_redact_known_answers(uri, redacted, path):
    """`None`: unchanged (redacted) / the same as redacted (path)."""
    expected = uri if redacted is None else redacted
    assert redact(uri) == expected
    assert object_path(uri) == (expected if path is None else path)


def test_redact_text_redacts_every_uri_in_a_message():
    message = (
        'Could not connect to the endpoint URL: "http://key:secret@127.0.0.1:1/bucket"; '
        f"then https://u:v@h/x?{PRESIGNED} read 0 of 10 bytes"
    )
    assert redact_text(message) == (
        'Could not connect to the endpoint URL: "http://127.0.0.1:1/bucket"; then https://h/x?'
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20240601T000000Z&X-Amz-Expires=3600"
        "&X-Amz-SignedHeaders=host read 0 of 10 bytes"
    )


def test_split_userinfo_keeps_the_query_for_reading():
    uri = "https://a%20user:p%40ss@host:8443/x.warc.gz?X-Amz-Signature=s"
    assert split_userinfo(uri) == ("https://host:8443/x.warc.gz?X-Amz-Signature=s", "a user:p@ss")
    assert split_userinfo("https://host/x") == ("https://host/x", None)


# ---------------------------------------------------------------- end to end


class _AuthenticatedFiles(BaseHTTPRequestHandler):
    """Serves FILES by name, only to requests with USER:PASSWORD as Basic credentials; the query (a
    presigned URL's) is ignored, as a server behind a signature check would see it."""

    FILES = {
        "jwarc-cc.warc.gz": (WARC_DIR / "jwarc-cc.warc.gz").read_bytes(),
        "truncated.warc.gz": (WARC_DIR / "dolma-sample-0000.warc.gz").read_bytes()[:60_000],
    }
    authorized_gets: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self.send_error(401)
            return
        body = self.FILES.get(self.path.partition("?")[0].lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        self.authorized_gets.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def secret_url() -> Iterator[str]:
    """The URL of a file on a local server that wants credentials, "...{name}...", with userinfo and a
    presigned URL's query."""
    _AuthenticatedFiles.authorized_gets = []
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), _AuthenticatedFiles)) as base:
        host = base.removeprefix("http://")
        yield f"http://{USER}:{PASSWORD}@{host}/{{name}}?{PRESIGNED}"


def _text_of(path: Path) -> str:
    """Everything a file holds as text: a Parquet file's every cell and its metadata, else its bytes."""
    if path.suffix == ".parquet":
        parquet = pq.ParquetFile(path)
        return f"{parquet.read().to_pylist()} {parquet.schema_arrow.metadata}"
    return path.read_bytes().decode("utf-8", errors="replace")


def _assert_no_secret(where: str, text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"{leaked} in {where}"


def test_ingest_of_urls_with_credentials_stores_and_prints_none(spark, secret_url, tmp_path, capfd):
    root = tmp_path / "out"
    good, missing = secret_url.format(name="jwarc-cc.warc.gz"), secret_url.format(name="missing.warc.gz")
    endpoint = f"http://minio:{ENDPOINT_PASSWORD}@127.0.0.1:9"
    argv = ["ingest", good, missing, "-o", str(root), "--s3-endpoint", endpoint, "--master", "local[2]"]
    assert cli.main(argv) == cli.EXIT_INCOMPLETE  # the missing file is a failed unit

    assert _AuthenticatedFiles.authorized_gets  # read with the credentials, as given
    (documents,) = (root / "documents").glob("*.parquet")
    file_paths = set(pq.read_table(documents, columns=["file_path"]).column("file_path").to_pylist())
    port = good.split("@127.0.0.1:")[1].split("/")[0]
    assert file_paths == {f"http://127.0.0.1:{port}/jwarc-cc.warc.gz"}
    files = [path for path in root.rglob("*") if path.is_file()]
    assert {path.relative_to(root).parts[0] for path in files} >= {"documents", "stats", "runs", "markers"}
    for path in files:
        _assert_no_secret(str(path), f"{path.relative_to(root)} {_text_of(path)}")
    captured = capfd.readouterr()
    _assert_no_secret("stdout", captured.out)
    _assert_no_secret("stderr", captured.err)
    assert f"(http://127.0.0.1:{port}/missing.warc.gz?X-Amz-Algorithm" in captured.err  # FAILED unit ...


def test_executor_log_lines_name_the_unit_without_credentials(secret_url, tmp_path, caplog):
    """What a task logs goes to the executor's stderr, which the driver never sees: checked in-process."""
    job = IngestJob(root=str(tmp_path / "out"))
    with caplog.at_level(logging.WARNING):
        failed = _process(secret_url.format(name="missing.warc.gz"), None, job)["failed"]
        stats = process_unit(secret_url.format(name="truncated.warc.gz"), job)
    assert stats.errors  # the cut record was logged as a warning
    messages = [record.getMessage() for record in caplog.records]
    assert any("/missing.warc.gz" in message for message in messages)
    assert any("/truncated.warc.gz" in message for message in messages)
    for text in [*messages, caplog.text, str(failed), str(stats.to_dict())]:
        _assert_no_secret("a log line", text)
