"""Bad input is one line (exit 2) before any work: recipe values of the wrong type or out of range, a
report of a ROOT without output, and an output root that refuses writes although its permissions, mount
options or bucket's existence look fine (a real probe write finds it)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.conftest import WARC_DIR, _free_port
from tokenmill.jobs import cli
from tokenmill.pipeline.storage import S3Options
from tokenmill.pipeline.storage.roots import check_writable_root

WARC = str(WARC_DIR / "jwarc-cc.warc.gz")
REPO = Path(__file__).resolve().parents[1]


def _first_line_of_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert cli.main(argv) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"tokenmill {argv[0]}: error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "first_line"),
    [
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--set", "language.languages=en"],
            "recipe key 'language.languages' has the wrong type: 'en' is a string, not a list "
            '(a list in TOML: language.languages=["en"])',
        ),
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--set", "reader.require_http_200=yes"],
            "recipe key 'reader.require_http_200' has the wrong type: 'yes' is a string, not true or false",
        ),
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--set", "language.model=3"],
            "recipe key 'language.model' has the wrong type: 3 is a number, not a string",
        ),
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--set", 'gopher_repetition.top_ngram_sizes=[2, "3"]'],
            "recipe key 'gopher_repetition.top_ngram_sizes' has the wrong type: entry '3' is a string, "
            "not a number",
        ),
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--set", "language.threshold=1.5"],
            "recipe key 'language.threshold' is out of range: 1.5 is not a number in [0, 1]",
        ),
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--set", "gopher_quality.min_doc_words=-5"],
            "recipe key 'gopher_quality.min_doc_words' is out of range: -5 is not a whole number >= 0",
        ),
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--set", "gopher_repetition.dup_ngram_fracs=[0.1, 1.2]"],
            "recipe key 'gopher_repetition.dup_ngram_fracs' is out of range: entry 1.2 is not a number "
            "in [0, 1]",
        ),
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--set", "c4.min_num_sentences=-2"],
            "recipe key 'c4.min_num_sentences' is out of range: -2 is not a whole number >= 0 or -1 (off)",
        ),
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--set", "extract.timeout_s=0"],
            "recipe key 'extract.timeout_s' is out of range: 0 is not a number > 0",
        ),
        (
            ["ingest", WARC, "-o", "{tmp}/out", "--recipe", "{tmp}/loose.toml"],
            "recipe key 'fineweb_quality.short_line_thr' is out of range: 67 is not a number in [0, 1]",
        ),
        (
            ["run", WARC, "-o", "{tmp}/out", "--set", "c4.max_word_length=12.5"],
            "recipe key 'c4.max_word_length' is out of range: 12.5 is not a whole number >= 0 or -1 (off)",
        ),
        (
            ["report", "-o", "{tmp}/no-such-run"],
            "-o {tmp}/no-such-run: no tokenmill output there (no runs/, stats/, documents/, tokens/ or "
            "trainer metrics.jsonl); give the -o of an ingest, run or train",
        ),
        (["report", "-o", "{tmp}/unrelated"], "-o {tmp}/unrelated: no tokenmill output there"),
    ],
)
def test_bad_input_is_one_line_before_any_work(argv, first_line, tmp_path, capsys):
    (tmp_path / "loose.toml").write_text('extends = "fineweb"\n[fineweb_quality]\nshort_line_thr = 67\n')
    (tmp_path / "unrelated" / "notes").mkdir(parents=True)
    (tmp_path / "unrelated" / "notes" / "todo.txt").write_text("not a run")
    line = _first_line_of_error(capsys, [arg.format(tmp=tmp_path) for arg in argv])
    assert line.removeprefix(f"tokenmill {argv[0]}: error: ").startswith(first_line.format(tmp=tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["loose.toml", "unrelated"]  # nothing made


def test_the_probe_leaves_nothing_behind(tmp_path, s3_endpoint):
    check_writable_root(str(tmp_path / "new" / "root"), S3Options())
    check_writable_root(str(tmp_path), S3Options())
    assert list(tmp_path.iterdir()) == []
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket="probe-leaves-nothing")
    check_writable_root("s3://probe-leaves-nothing/run", S3Options(endpoint_url=s3_endpoint))
    assert client.list_objects_v2(Bucket="probe-leaves-nothing").get("KeyCount") == 0


# ---------------------------------------------------------------- roots that refuse writes


@pytest.fixture()
def read_only_bucket() -> Iterator[tuple[str, dict[str, str]]]:
    """(endpoint, credentials) of a moto server that checks IAM: the bucket exists, and the user may do
    anything in S3 except put and delete objects, as a read-only bucket policy allows. A server of its
    own, because the S3 clients are cached per endpoint with the credentials they were made with."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="read-only-bucket")
    iam = boto3.client("iam", endpoint_url=endpoint)
    iam.create_user(UserName="reader")
    statements = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["s3:PutObject", "s3:DeleteObject"], "Resource": "*"},
    ]
    policy = json.dumps({"Version": "2012-10-17", "Statement": statements})
    iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=policy)
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    credentials = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}

    def require_authentication(count: str) -> None:
        """moto's switch: after `count` more requests ("inf": never) every request is checked."""
        request = urllib.request.Request(
            f"{endpoint}/moto-api/reset-auth", count.encode(), {"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).close()

    require_authentication("0")
    try:
        yield endpoint, credentials
    finally:
        require_authentication("inf")  # moto's settings are per process: the shared server too
        server.stop()


def test_a_read_only_bucket_is_one_line(read_only_bucket, monkeypatch, capsys):
    endpoint, credentials = read_only_bucket
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
    argv = ["ingest", WARC, "-o", "s3://read-only-bucket/run", "--s3-endpoint", endpoint]
    assert _first_line_of_error(capsys, argv).endswith(
        "-o s3://read-only-bucket/run: cannot write objects in bucket 'read-only-bucket' (AccessDenied: "
        "Access Denied); check the bucket policy and the credentials' permissions"
    )


def _ingest_in_a_child(root: Path, wrap: list[str], limit_file_size: bool) -> subprocess.CompletedProcess:
    """`tokenmill ingest WARC -o root` in a child process, run under `wrap` (a command prefix) and, with
    `limit_file_size`, allowed to write files of 0 bytes only (RLIMIT_FSIZE, as a full quota refuses)."""

    def refuse_file_growth() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write is EFBIG, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    code = "import sys; from tokenmill.jobs.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [*wrap, sys.executable, "-c", code, "ingest", WARC, "-o", str(root)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=refuse_file_growth if limit_file_size else None,
    )


def test_a_root_that_refuses_writes_despite_its_permissions_is_one_line(tmp_path):
    """The directory is writable by mode, so only a write finds out; without the probe the job would
    start and fail on its first output."""
    result = _ingest_in_a_child(tmp_path / "out", [], limit_file_size=True)
    assert result.returncode == cli.EXIT_USER_ERROR, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"tokenmill ingest: error: -o {tmp_path}/out: cannot write in {tmp_path} (File too large); "
        "choose another -o or fix its permissions, mount or free space"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_filesystem_is_one_line(tmp_path):
    """A read-only bind mount of the output's parent, in a user and mount namespace of the child's own."""
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-Urm", "true"], capture_output=True).returncode:
        pytest.skip("no user namespaces here to mount a read-only filesystem in")
    parent = tmp_path / "mounted"
    parent.mkdir()
    mount = f'mount --bind -o ro {parent} {parent} && exec "$@"'
    result = _ingest_in_a_child(parent / "out", [unshare, "-Urm", "sh", "-c", mount, "sh"], False)
    assert result.returncode == cli.EXIT_USER_ERROR, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        f"tokenmill ingest: error: -o {parent}/out: cannot write in {parent} (Read-only file system); "
        "choose another -o or fix its permissions, mount or free space"
    ]
