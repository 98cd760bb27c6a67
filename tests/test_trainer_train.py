"""Training: exact resume (20 steps = 10 + resume + 10, loss for loss), --max-steps setting the run's
length, torchrun with gloo equal to one process at the same global batch, resume decided by rank 0 on
nodes with their own disks, a uint32 token set, metrics.jsonl, the schedules, and clear errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainer_data import random_documents, write_token_set
from tokenmill.jobs.cli import main
from tokenmill.pipeline.errors import UserError
from tokenmill.trainer.checkpoint import CHECKPOINT
from tokenmill.trainer.config import load_config, with_run_length
from tokenmill.trainer.data import PackedWindows, ShardDocuments, open_token_set
from tokenmill.trainer.distributed import Processes
from tokenmill.trainer.loop import evaluate
from tokenmill.trainer.model import GPT, GPTConfig
from tokenmill.trainer.schedule import Schedule
from tokenmill.trainer.train import train

REPO = Path(__file__).resolve().parent.parent
VOCAB, EOT = 500, 499


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    docs = random_documents(300, VOCAB, EOT, seed=0, lengths=(5, 150))
    return write_token_set(tmp_path_factory.mktemp("tokens") / "test", docs[30:], docs[:30], VOCAB, EOT, 4000)


def _config(path: Path, **overrides) -> Path:
    settings = {"batch_size": 8, "micro_batch_size": 4, "max_steps": 20, "warmup_steps": 4}
    settings |= {"val_every": 5, "val_windows": 24, "checkpoint_every": 0} | overrides
    path.write_text(json.dumps(settings))
    return path


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_ten_steps_resume_ten_steps_equals_twenty_straight(data: Path, tmp_path: Path) -> None:
    # Dropout on, so the restored RNG states matter too; two accumulation passes per step.
    config = _config(tmp_path / "run.json", model={"dropout": 0.1})
    train(data, load_config(str(config)), tmp_path / "straight", device="cpu")
    common = ["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "split")]
    assert main([*common, "--stop-after", "10", "--device", "cpu"]) == 0
    assert [r["step"] for r in _metrics(tmp_path / "split")] == list(range(1, 11))
    assert main([*common, "--resume", "--device", "cpu"]) == 0

    straight, split = _metrics(tmp_path / "straight"), _metrics(tmp_path / "split")
    assert [r["step"] for r in split] == list(range(1, 21))
    assert [r["loss"] for r in split] == [r["loss"] for r in straight]
    assert [r["lr"] for r in split] == [r["lr"] for r in straight]
    assert split[-1]["val_loss"] == straight[-1]["val_loss"]
    assert split[0]["loss"] == pytest.approx(math.log(VOCAB), abs=0.15)
    for record in straight:
        assert {"step", "loss", "lr", "tokens_per_s", "mfu"} <= set(record)
        assert record["mfu"] is None  # a CPU has no peak
        assert ("val_loss" in record) == (record["step"] % 5 == 0)
        assert (record["tokens_per_s"] is None) == (record["step"] <= 3)  # warm-up steps left out
    states = [torch.load(tmp_path / run / CHECKPOINT, weights_only=False) for run in ("straight", "split")]
    assert states[0]["step"] == states[1]["step"] == 20
    assert states[0]["data"] == states[1]["data"]
    for name, tensor in states[0]["model"].items():
        assert torch.equal(tensor, states[1]["model"][name]), name
    assert set(json.loads((tmp_path / "split" / "manifest.json").read_text())["tokenizer"]) >= {"source"}


@pytest.mark.slow
def test_torchrun_two_ranks_gloo_equals_one_process(data: Path, tmp_path: Path) -> None:
    config = _config(tmp_path / "run.json", max_steps=6, val_every=3)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [str(REPO / "jobs" / "train.py"), "--data", str(data), "--config", str(config)]
    command += ["--out", str(tmp_path / "ddp"), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # One process: micro-batches of 4 accumulated twice; two ranks: one micro-batch of 4 each.
    train(data, load_config(str(config)), tmp_path / "single", device="cpu")
    ddp, single = _metrics(tmp_path / "ddp"), _metrics(tmp_path / "single")
    assert [r["step"] for r in ddp] == [r["step"] for r in single] == list(range(1, 7))
    # Sums in another order (all-reduce, accumulation, one thread per rank): float32 rounding only.
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in single], rel=1e-5)
    assert (
        [r["step"] for r in ddp if "val_loss" in r]
        == [r["step"] for r in single if "val_loss" in r]
        == [3, 6]
    )
    val = [r["val_loss"] for r in single if "val_loss" in r]
    assert [r["val_loss"] for r in ddp if "val_loss" in r] == pytest.approx(val, rel=1e-5)
    assert torch.load(tmp_path / "ddp" / CHECKPOINT, weights_only=False)["world_size"] == 2


@pytest.mark.slow
def test_uint32_token_set_loads_and_trains(tmp_path: Path) -> None:
    vocab, eot = 200_019, 200_018
    docs = random_documents(40, 1000, 999, seed=3, lengths=(5, 80))
    docs = [doc + 199_000 for doc in docs]  # ids 199,000..199,998 (beyond uint16), EOT 200,018 ...
    for doc in docs:
        doc[0] = eot
    root = write_token_set(tmp_path / "o200k", docs[4:], docs[:4], vocab, eot, 700)
    assert json.loads((root / "manifest.json").read_text())["dtype"] == "uint32"
    config = _config(tmp_path / "run.json", max_steps=3, val_every=0, warmup_steps=1)
    records = train(root, load_config(str(config)), tmp_path / "out", device="cpu")
    state = torch.load(tmp_path / "out" / CHECKPOINT, weights_only=False)
    assert state["config"]["model"]["vocab_size"] == 200_064  # 200,019 rounded up to a multiple of 64
    assert records[0]["loss"] == pytest.approx(math.log(200_064), abs=0.15)
    assert records[-1]["loss"] < records[0]["loss"] and "val_loss" in records[-1]


def test_clear_errors(data: Path, tmp_path: Path) -> None:
    config = _config(tmp_path / "run.json", max_steps=2, warmup_steps=1, val_every=0)
    train(data, load_config(str(config)), tmp_path / "out", device="cpu")
    with pytest.raises(UserError, match="pass --resume"):
        train(data, load_config(str(config)), tmp_path / "out", device="cpu")
    other = _config(tmp_path / "other.json", max_steps=2, warmup_steps=1, val_every=0, lr=3e-3)
    with pytest.raises(ValueError, match=r"another config:\n  lr: checkpoint 0.01, now 0.003"):
        train(data, load_config(str(other)), tmp_path / "out", resume=True, device="cpu")
    small = _config(tmp_path / "small.json", model={"vocab_size": 256})
    with pytest.raises(ValueError, match="vocab_size 256 is smaller than the token set's vocabulary 500"):
        train(data, load_config(str(small)), tmp_path / "small", device="cpu")
    with pytest.raises(UserError, match=r"--stop-after 30 must lie in 1..20"):
        train(
            data, load_config(str(_config(tmp_path / "a.json"))), tmp_path / "a", stop_after=30, device="cpu"
        )
    with pytest.raises(UserError, match=r"max_steps: checkpoint 2, now 5"):
        train(data, load_config(str(config)), tmp_path / "out", resume=True, max_steps=5, device="cpu")
    uneven = _config(tmp_path / "uneven.json", batch_size=12, micro_batch_size=8)
    with pytest.raises(ValueError, match="batch_size 12 is not a multiple of micro_batch_size 8"):
        load_config(str(uneven))
    docs = random_documents(100, VOCAB, EOT, seed=9, lengths=(5, 150))
    elsewhere = write_token_set(tmp_path / "elsewhere", docs[10:], docs[:10], VOCAB, EOT, 4000)
    with pytest.raises(ValueError, match="trained on other shards"):
        train(elsewhere, load_config(str(config)), tmp_path / "out", resume=True, device="cpu")


def test_cosine_and_wsd_schedules_known_values() -> None:
    cosine = Schedule("cosine", max_lr=1.0, min_lr=0.1, warmup_steps=10, total_steps=111)
    assert [cosine(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert cosine(10) == pytest.approx(1.0) and cosine(110) == pytest.approx(0.1)
    assert cosine(60) == pytest.approx(0.55)  # halfway through the decay: the mean of max and min
    wsd = Schedule("wsd", max_lr=1.0, min_lr=0.0, warmup_steps=10, total_steps=100, decay_fraction=0.2)
    assert wsd(10) == wsd(79) == 1.0
    assert [wsd(s) for s in (80, 89, 99)] == pytest.approx([0.95, 0.5, 0.0])


def test_max_steps_sets_the_run_and_resume_keeps_it(data: Path, tmp_path: Path) -> None:
    """`--max-steps 30` is a 30-step run (schedule and warm-up included); stopping after 12 and resuming
    without --max-steps finishes that same run, loss for loss."""
    config = _config(tmp_path / "run.json", max_steps=20, warmup_steps=4, val_every=0)
    straight = train(data, load_config(str(config)), tmp_path / "straight", max_steps=30, device="cpu")
    assert [r["step"] for r in straight] == list(range(1, 31))
    common = ["train", "--data", str(data), "--config", str(config), "--out", str(tmp_path / "split")]
    assert main([*common, "--max-steps", "30", "--stop-after", "12", "--device", "cpu"]) == 0
    assert main([*common, "--resume", "--device", "cpu"]) == 0
    split = _metrics(tmp_path / "split")
    assert [r["loss"] for r in split] == [r["loss"] for r in straight]
    schedule = Schedule("cosine", 1e-2, 1e-3, warmup_steps=6, total_steps=30)  # warm-up 4/20 of 30 steps
    assert [r["lr"] for r in straight] == pytest.approx([schedule(step) for step in range(30)])
    assert straight[-1]["lr"] == pytest.approx(1e-3)  # the decay ends on the run's last step
    state = torch.load(tmp_path / "split" / CHECKPOINT, weights_only=False)
    assert (state["step"], state["config"]["max_steps"], state["config"]["warmup_steps"]) == (30, 30, 6)


@pytest.mark.slow
def test_named_tiny_config_runs_300_steps(data: Path, tmp_path: Path) -> None:
    assert main(["train", "--data", str(data), "--config", "tiny", "--out", str(tmp_path / "t"),
                 "--max-steps", "300", "--device", "cpu"]) == 0  # fmt: skip
    records = _metrics(tmp_path / "t")
    assert records[-1]["step"] == 300 and records[-1]["lr"] == pytest.approx(1e-3)
    assert [r["step"] for r in records if "val_loss" in r] == [50, 100, 150, 200, 250, 300]


def test_run_length_scales_the_warmup_and_keeps_the_rest() -> None:
    tiny = load_config("tiny")
    assert (tiny.max_steps, tiny.warmup_steps) == (200, 10)
    longer = with_run_length(tiny, 300)
    assert (longer.max_steps, longer.warmup_steps, longer.lr, longer.decay_fraction) == (300, 15, 1e-2, 0.2)
    assert with_run_length(tiny, 200) is tiny
    assert with_run_length(load_config("gpt2-124m"), 50).warmup_steps == 2  # 700 of 19,073 steps
    assert with_run_length(tiny, 1).warmup_steps == 0


def _two_nodes(
    tmp_path: Path, data: Path, config: Path, extra: list[str]
) -> list[subprocess.CompletedProcess]:
    """A 2-node torchrun job on this machine, one process per node, each node in its own directory:
    the relative --out names a different directory on each, as on nodes with their own disks."""
    port = 29500 + os.getpid() % 1000
    runs = []
    for node in (0, 1):
        (tmp_path / f"node{node}").mkdir(exist_ok=True)
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node}"]
        command += ["--nproc_per_node=1", "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}"]
        command += [str(REPO / "jobs" / "train.py"), "--data", str(data), "--config", str(config)]
        command += ["--out", "run", "--device", "cpu", "--dist-timeout", "60", *extra]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        runs.append(subprocess.Popen(command, cwd=tmp_path / f"node{node}", env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True))  # fmt: skip
    return [subprocess.CompletedProcess(run.args, run.wait(timeout=240), *run.communicate()) for run in runs]


@pytest.mark.slow
def test_rank_zero_decides_resume_and_a_rank_without_the_checkpoint_fails_loudly(
    data: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path / "run.json", max_steps=6, val_every=3)
    first = _two_nodes(tmp_path, data, config, ["--stop-after", "3"])
    assert [done.returncode for done in first] == [0, 0], first[0].stderr[-2000:] + first[1].stderr[-2000:]
    assert not (tmp_path / "node1" / "run" / CHECKPOINT).exists()  # rank 0 alone writes
    failed = _two_nodes(tmp_path, data, config, ["--resume"])
    assert all(done.returncode != 0 for done in failed)
    assert "rank 1 cannot resume from run/checkpoint.pt, where rank 0 resumes" in failed[1].stderr
    assert "rank 0 stops: another rank cannot read run/checkpoint.pt" in failed[0].stderr
    (tmp_path / "node1" / "run").mkdir(exist_ok=True)
    shutil.copy(tmp_path / "node0" / "run" / CHECKPOINT, tmp_path / "node1" / "run" / CHECKPOINT)
    resumed = _two_nodes(tmp_path, data, config, ["--resume"])
    assert [done.returncode for done in resumed] == [0, 0], resumed[1].stderr[-2000:]
    ddp = _metrics(tmp_path / "node0" / "run")
    assert [r["step"] for r in ddp] == list(range(1, 7))
    single = train(data, load_config(str(config)), tmp_path / "single", device="cpu")
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in single], rel=1e-5)


def test_evaluation_keeps_the_training_shape_and_averages_per_target(data: Path) -> None:
    """A ragged last batch is filled with masked rows (a compiled model would recompile for a new shape),
    and the result is the mean over every real target, the last partial window's included."""
    val = ShardDocuments((open_token_set(data).val,))
    windows = PackedWindows(val, 16, split=True, wrap=False, lookahead=8)
    rows = []
    while True:
        try:
            rows.append(windows.next_window())
        except StopIteration:
            break
    assert len(rows) % 7 and (rows[-1][1] == -1).any()  # a ragged last batch and a padded last window
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=512, block_size=16, n_layer=1, n_head=2, n_embd=32))
    shapes = []
    model.register_forward_pre_hook(lambda _, args: shapes.append(tuple(args[0].shape)))
    windows.rewind()
    loss = evaluate(model, windows, 7, None, Processes(0, 1, 0, torch.device("cpu")))
    assert set(shapes) == {(7, 16)} and len(shapes) == -(-len(rows) // 7)
    inputs, targets = (torch.from_numpy(np.stack(part)) for part in zip(*rows, strict=True))
    with torch.no_grad():
        logits = model.head(model.norm_f(model.blocks[0](model.wte(inputs) + model.wpe.weight, None, None)))
    losses = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2), targets, ignore_index=-1, reduction="sum"
    )
    assert loss == pytest.approx(losses.item() / int((targets >= 0).sum()), rel=1e-5)
