"""End to end on real text: tiny shakespeare, one document per speech, through the real `tokenmill
tokenize` (GPT-2 encoding), then `tokenmill train` with the tiny model and `tokenmill sample`."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import DATA
from tokenmill.jobs.cli import main

pytestmark = [pytest.mark.spark, pytest.mark.slow]  # tokenize in a Spark subprocess, then training

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def shakespeare_tokens(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("shakespeare")
    text = (DATA / "text" / "tinyshakespeare_input.txt").read_text(encoding="utf-8")
    speeches = [speech.strip() for speech in re.split(r"\n\s*\n", text) if speech.strip()]
    ids = [f"speech-{i:05d}" for i in range(len(speeches))]
    pq.write_table(pa.table({"id": ids, "text": speeches}), work / "speeches.parquet")
    command = [
        sys.executable,
        "-m",
        "tokenmill.jobs.cli",
        "tokenize",
        "-o",
        str(work / "root"),
        "--encoding",
        "gpt2",
    ]
    command += [
        "--input",
        str(work / "speeches.parquet"),
        "--shard-tokens",
        "100000",
        "--val-tokens",
        "20000",
    ]
    done = subprocess.run(command + ["--master", "local[2]"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "root" / "tokens" / "gpt2"


@pytest.fixture(scope="session")
def trained(shakespeare_tokens: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "out"
    config = out.parent / "tiny.json"
    config.write_text(
        json.dumps(
            {
                "batch_size": 8,
                "micro_batch_size": 8,
                "max_steps": 50,
                "warmup_steps": 5,
                "val_every": 25,
                "val_windows": 64,
                "checkpoint_every": 0,
            }
        )  # fmt: skip
    )
    command = ["train", "--data", str(shakespeare_tokens), "--config", str(config), "--out", str(out)]
    assert main([*command, "--device", "cpu"]) == 0
    return out


def test_tiny_model_lowers_validation_loss_well_below_its_start(trained: Path) -> None:
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["dtype"] == "uint16" and manifest["vocab_size"] == 50257
    start = records[0]["loss"]
    assert start == pytest.approx(math.log(50304), abs=0.2)  # uniform over the padded vocabulary
    val = [record["val_loss"] for record in records if "val_loss" in record]
    assert len(val) == 2 and val[1] < val[0]
    assert val[-1] < start - 3.0  # ~20x more likely than uniform per token, on held-out speeches


def test_sample_continues_a_prompt_with_the_run_tokenizer(trained: Path, capsys) -> None:
    command = ["sample", "--checkpoint", str(trained), "--prompt", "ROMEO:", "--max-new-tokens", "24"]
    outputs = []
    for options in (["--temperature", "0"], ["--temperature", "0"], ["--top-p", "0.9", "--seed", "3"]):
        assert main([*command, *options, "--device", "cpu"]) == 0
        outputs.append(capsys.readouterr().out)
    greedy, again, nucleus = outputs
    assert greedy == again  # greedy decoding is deterministic
    assert greedy.startswith("ROMEO:") and nucleus.startswith("ROMEO:")
    assert len(greedy) > len("ROMEO:\n") and nucleus != greedy  # a sample, not the argmax path
