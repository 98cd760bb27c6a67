"""Every command's help renders, and every job script starts as spark-submit / torchrun start it
(as `python jobs/<name>.py`, with jobs/ first on sys.path, where jobs/tokenize.py could shadow the
standard library's tokenize)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tokenmill.jobs import cli

REPO = Path(__file__).resolve().parents[1]
COMMANDS = sorted(cli._jobs())
SCRIPT_NAMES = {command: command.replace("-", "_") for command in COMMANDS} | {"tokenize": "tokens"}
SCRIPTS = sorted(
    path.name for path in (REPO / "jobs").glob("*.py") if path.stem in set(SCRIPT_NAMES.values())
)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_renders(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"tokenmill {command}" in capsys.readouterr().out


def test_every_command_has_its_script():
    assert len(SCRIPTS) == len(COMMANDS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_job_script_starts_as_a_script(script):
    result = subprocess.run(
        [sys.executable, str(REPO / "jobs" / script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout
