"""The `tokenmill` command: every command's help renders, every job script starts as spark-submit /
torchrun start it, `run` takes every stage option, and a user's mistake is one line with exit status 2."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tokenmill.jobs import cli
from tokenmill.jobs.stages import run

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((REPO / "jobs").glob("*.py"))
ENTRY_SCRIPTS = [path for path in SCRIPTS if path.stem not in ("__init__", "cli")]
WARC = str(REPO / "tests" / "data" / "warc" / "dolma-sample-0000.warc.gz")


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_help_renders(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"tokenmill {command}" in capsys.readouterr().out


def test_every_command_has_one_entry_script():
    commands = [path.read_text().split('COMMAND = "')[1].split('"')[0] for path in ENTRY_SCRIPTS]
    assert sorted(commands) == sorted(cli.COMMANDS)


@pytest.mark.parametrize("folder", ["jobs", "bench"])
def test_no_script_shadows_the_standard_library(folder):
    """A script's folder leads sys.path, so a jobs/tokenize.py would replace the stdlib's tokenize."""
    names = {path.stem for path in (REPO / folder).glob("*.py")}
    assert not names & set(sys.stdlib_module_names)


@pytest.mark.slow  # a Python process per script
@pytest.mark.parametrize("script", ENTRY_SCRIPTS, ids=lambda path: path.name)
def test_job_script_starts_as_a_script(script):
    result = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout


def test_run_takes_every_option_of_its_stages():
    parsed = cli.command_parser("run")._actions
    run_options = {action.dest for action in parsed}
    for settings in run.OPTION_SOURCES:
        names = {field.name for field in dataclasses.fields(settings)} - run.CHAINED
        assert names <= run_options, (settings.__name__, names - run_options)
    namespace = cli.parser().parse_args(
        [
            "run",
            WARC,
            "-o",
            "x",
            "--url-dedup",
            "--priority",
            "language_score",
            "--phones",
            "--min-jaccard",
            "0.6",
        ]
        + ["--set", "c4.enabled=false", "--set=language.threshold=0.5", "--seed", "3"]
    )
    settings = run.pipeline_settings(namespace)
    assert settings.dedup.url_dedup and settings.dedup.phones and settings.dedup.priority == "language_score"
    assert settings.dedup.min_jaccard == 0.6 and settings.tokenize.seed == 3
    assert settings.ingest.overrides == ("c4.enabled=false", "language.threshold=0.5")
    assert settings.dedup.output == settings.tokenize.output == settings.ingest.output == "x"


def _one_line_error(capsys, argv: list[str], expected: str) -> None:
    assert cli.main(argv) == cli.EXIT_USER_ERROR
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"tokenmill {argv[0]}: error: ") and expected in lines[0], lines[0]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["ingest", "tests/data/no-such.warc.gz", "-o", "{tmp}/out"], "input not found"),
        (["ingest", WARC, "-o", "{tmp}/out", "--recipe", "no-such-recipe"], "no recipe file or preset"),
        (["ingest", WARC, "-o", "{tmp}/out", "--set", "gopher_quality.no_such_key=3"], "unknown recipe key"),
        (["ingest", WARC, "-o", "{tmp}/out", "--limit", "-1"], "--limit -1"),
        (["ingest", WARC, "-o", "{tmp}/a-file"], "is a file"),
        (["run", WARC, "-o", "{tmp}/out", "--encoding", "gpt5"], "unknown encoding"),
        (["run", "-o", "{tmp}/out"], "give INPUT files"),
        (["dedup", "-o", "{tmp}/out", "--min-jaccard", "2"], "--min-jaccard 2.0"),
        (["dedup", "-o", "{tmp}/out", "--against", "{tmp}/nothing"], "no complete dedup there"),
        (["tokenize", "-o", "{tmp}/out", "--encoding", "gpt2", "--shard-tokens", "0"], "--shard-tokens 0"),
        (["scrub", "--input", "{tmp}/d", "-o", "{tmp}/d"], "is the input itself"),
        (["train-tokenizer", "-o", "{tmp}/out", "--vocab-size", "100"], "--vocab-size 100"),
        (["train", "--data", "{tmp}/nothing", "--config", "nosuch"], "--config nosuch"),
        (["sample", "--checkpoint", "{tmp}/nothing"], "not a `tokenmill train` output"),
    ],
)
def test_user_mistakes_are_one_line_before_spark(argv, expected, tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a directory")
    _one_line_error(capsys, [arg.format(tmp=tmp_path) for arg in argv], expected)


@pytest.mark.spark
@pytest.mark.parametrize("command", ["dedup", "tokenize", "train-tokenizer"])
def test_a_missing_dataset_is_one_line(command, spark, tmp_path, capsys):
    argv = [command, "-o", str(tmp_path / "out"), "--input", str(tmp_path / "none"), "--master", "local[2]"]
    argv += {"tokenize": ["--encoding", "gpt2"], "train-tokenizer": ["--vocab-size", "300"]}.get(command, [])
    _one_line_error(capsys, argv, "no Parquet files")


@pytest.mark.s3
def test_a_missing_bucket_is_one_line(s3_endpoint, capsys):
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket="cli-present")
    argv = ["ingest", WARC, "-o", "s3://cli-absent/run", "--s3-endpoint", s3_endpoint]
    _one_line_error(capsys, argv, "bucket 'cli-absent' does not exist")


@pytest.mark.slow
def test_a_user_error_in_a_real_process_exits_2_without_a_traceback(tmp_path):
    command = [
        sys.executable,
        str(REPO / "jobs" / "ingest.py"),
        str(tmp_path / "none.warc"),
        "-o",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"tokenmill ingest: error: input not found: {tmp_path}/none.warc"
    ]


@pytest.mark.parametrize(
    ("master", "python_bound", "submitted", "submit_args", "expected"),
    [
        ("local[2]", True, False, "", True),
        ("local[*]", True, False, "--driver-memory 4g pyspark-shell", True),
        ("local[2]", False, False, "", False),  # dedup's joins and sorts want C2
        ("spark://host:7077", True, False, "", False),  # long-lived executors amortize C2
        ("local[2]", True, True, "", False),  # spark-submit launched the JVM already
        ("local[2]", True, False, "--conf spark.driver.extraJavaOptions=-Xss4m pyspark-shell", False),
    ],
)
def test_quick_jit_only_for_python_bound_jobs_on_a_jvm_we_launch_locally(
    monkeypatch, master, python_bound, submitted, submit_args, expected
):
    from tokenmill.jobs.spark.session import quick_jit

    monkeypatch.setenv("PYSPARK_SUBMIT_ARGS", submit_args)
    assert quick_jit(master, python_bound, submitted) is expected
    assert cli.COMMANDS["tokenize"].python_bound and cli.COMMANDS["ingest"].python_bound
    assert not cli.COMMANDS["dedup"].python_bound and not cli.COMMANDS["run"].python_bound
