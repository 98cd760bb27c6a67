"""Processes and collectives: which GPU a local rank takes, the device a lone process chooses (and its
refusal to fall back to the CPU where GPUs exist), a rank's random streams in a checkpoint, and the
collectives under real torchrun process groups (gloo on the CPU) of 2 and 3 processes. Run as a
script, this file is the torchrun worker."""

from __future__ import annotations

import datetime
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tokenmill.pipeline.errors import UserError
from tokenmill.trainer import checkpoint
from tokenmill.trainer.distributed import (
    Processes,
    all_ranks_ok,
    all_ranks_sum,
    barrier,
    broadcast_from_main,
    gpus_present,
    pick_cuda_index,
    start_processes,
    stop_processes,
)

TIMEOUT = datetime.timedelta(seconds=60)


@pytest.mark.parametrize(
    ("local_rank", "local_world_size", "visible", "index"),
    [
        (0, 8, 8, 0),  # one node, every process sees every GPU
        (5, 8, 8, 5),
        (3, 4, 8, 3),  # four processes on an eight-GPU node
        (0, 1, 1, 0),
        (6, 8, 1, 0),  # the launcher gave each process its own GPU (CUDA_VISIBLE_DEVICES per rank)
    ],
)
def test_pick_cuda_index(local_rank: int, local_world_size: int, visible: int, index: int) -> None:
    assert pick_cuda_index(local_rank, local_world_size, visible) == index


@pytest.mark.parametrize(("local_rank", "local_world_size", "visible"), [(3, 4, 2), (0, 2, 0)])
def test_pick_cuda_index_refuses_too_few_gpus(local_rank: int, local_world_size: int, visible: int) -> None:
    with pytest.raises(UserError, match=f"{local_world_size} processes on this node.* sees {visible} GPUs"):
        pick_cuda_index(local_rank, local_world_size, visible)


@pytest.fixture
def alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """No torchrun around this process."""
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("alone")
def test_start_processes_alone_on_cpu() -> None:
    procs = start_processes("cpu", TIMEOUT)
    assert procs == Processes(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert procs.main and not procs.distributed
    # Alone, the collectives are identities.
    assert all_ranks_sum(torch.tensor([2.0])).item() == 2.0
    assert broadcast_from_main({"step": 3}) == {"step": 3}
    assert all_ranks_ok(True, procs) and not all_ranks_ok(False, procs)
    barrier(procs)
    stop_processes(procs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch can use CUDA here")
@pytest.mark.usefixtures("alone")
def test_start_processes_refuses_cuda_torch_cannot_use() -> None:
    with pytest.raises(UserError, match=r"--device cuda was given, but torch .* cannot use CUDA.*make setup"):
        start_processes("cuda", TIMEOUT)


def _fake_nvidia_smi(folder: Path, listing: str) -> str:
    """A PATH whose nvidia-smi prints `listing`: stands in for the driver's tool on a machine whose
    GPUs this one does not have."""
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '{listing}'\n")
    tool.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch can use CUDA here")
@pytest.mark.usefixtures("alone")
def test_a_gpu_machine_never_falls_back_to_cpu_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0b0c)\\n"
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path, listing))
    assert gpus_present()
    with pytest.raises(UserError, match=r"this machine has NVIDIA GPUs, but torch .*--device cpu"):
        start_processes(None, TIMEOUT)
    assert start_processes("cpu", TIMEOUT).device == torch.device("cpu")  # on purpose: allowed


@pytest.mark.skipif(Path("/proc/driver/nvidia/gpus").is_dir(), reason="the driver lists GPUs here")
def test_no_gpus_listed_means_none_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _fake_nvidia_smi(tmp_path, "No devices were found\\n"))
    assert not gpus_present()


def _draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rng_state_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    state = checkpoint.rng_state(cpu)
    assert state["cuda"] is None  # a CPU process has no CUDA stream to save
    expected = _draws()
    checkpoint.save(tmp_path, {"config": {}, "manifest": {}, "rng": [state]})
    _draws()  # the streams move on
    checkpoint.set_rng_state(checkpoint.load(tmp_path, parts=("rng",))["rng"][0], cpu)
    assert _draws() == expected


def _worker(out: Path) -> None:
    """One torchrun process: run every collective and write what it saw to out/rank<R>.json."""
    procs = start_processes("cpu", TIMEOUT)
    world, rank = procs.world_size, procs.rank
    seen = {
        "rank": rank,
        "world_size": world,
        "local_rank": procs.local_rank,
        "distributed": procs.distributed,
        "sum": all_ranks_sum(torch.tensor([rank + 1.0, 1.0])).tolist(),
        "broadcast": broadcast_from_main({"step": 40 + rank, "path": f"ckpt-of-rank-{rank}"}),
        "all_ok": all_ranks_ok(True, procs),
        "last_rank_not_ok": all_ranks_ok(rank != world - 1, procs),
        "only_main_ok": all_ranks_ok(procs.main, procs),
    }
    barrier(procs)
    stop_processes(procs)
    (out / f"rank{rank}.json").write_text(json.dumps(seen))


@pytest.mark.slow  # torchrun and torch start in each process: ~5 s
@pytest.mark.parametrize("world", [2, 3])
def test_collectives_under_torchrun(tmp_path: Path, world: int) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}"]
    result = subprocess.run([*command, __file__, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(world)]
    for rank, view in enumerate(seen):
        assert (view["rank"], view["world_size"], view["local_rank"]) == (rank, world, rank)
        assert view["distributed"]
        assert view["sum"] == [world * (world + 1) / 2, world]
        assert view["broadcast"] == {"step": 40, "path": "ckpt-of-rank-0"}
        assert view["all_ok"] is True
        assert view["last_rank_not_ok"] is False
        assert view["only_main_ok"] is False


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
