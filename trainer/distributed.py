"""This process's place among the processes torchrun started, and the few collectives training needs.

Alone (no RANK in the environment) a run is one process on one device. Under torchrun each process
reads RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE, takes a GPU among those its node lets it
see, and joins the process group: NCCL on CUDA (bound to that GPU, which lets NCCL set up its
communicators at once), gloo on the CPU. Every blocking collective waits at most `timeout`, so a rank
that died or took another path fails the job instead of hanging it.

A GPU machine never trains on the CPU by accident: when the machine has NVIDIA GPUs but torch cannot
use them (a CPU build, a driver mismatch), choosing the device is an error that says how to fix it;
only an explicit --device cpu trains on the CPU there.
"""

from __future__ import annotations

import datetime
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from tokenmill.pipeline.errors import UserError


@dataclass(frozen=True)
class Processes:
    """This process's place: its rank among all processes, on its node, and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        """In a process group (under torchrun, even with one process)."""
        return dist.is_initialized()

    @property
    def main(self) -> bool:
        return self.rank == 0


def gpus_present() -> bool:
    """Whether this machine has NVIDIA GPUs, whatever torch makes of them: the driver lists them in
    /proc, or `nvidia-smi -L` does (containers often have the tool but not the /proc entries)."""
    listed = Path("/proc/driver/nvidia/gpus")
    if listed.is_dir() and any(listed.iterdir()):
        return True
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.startswith("GPU ") for line in result.stdout.splitlines())


def device_kind(device: str | None) -> str:
    """The device kind, "cuda" or "cpu": the one asked for, else CUDA when torch can use it. Refuses to
    fall back to the CPU on a machine whose GPUs torch cannot use."""
    if device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    has_gpus = gpus_present()
    if device == "cuda" or has_gpus:
        build = "a CPU build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        asked = "this machine has NVIDIA GPUs" if has_gpus else "--device cuda was given"
        raise UserError(
            f"{asked}, but torch {torch.__version__} ({build}) cannot use CUDA here: run `make setup` "
            "(on a GPU machine it installs a CUDA build of torch) and check `nvidia-smi`, or pass "
            "--device cpu to run on the CPU on purpose"
        )
    return "cpu"


def pick_cuda_index(local_rank: int, local_world_size: int, visible: int) -> int:
    """The CUDA device index for local rank `local_rank` of `local_world_size` processes on a node
    where this process sees `visible` GPUs: its own GPU when it sees them all, the only one when the
    launcher gave each process one (CUDA_VISIBLE_DEVICES per rank)."""
    if visible >= local_world_size:
        return local_rank
    if visible == 1:
        return 0
    raise UserError(
        f"{local_world_size} processes on this node, but process {local_rank} sees {visible} GPUs: "
        "give each process one GPU, or let every process see at least as many GPUs as there are processes"
    )


def start_processes(device: str | None, timeout: datetime.timedelta) -> Processes:
    """Choose the device and, under torchrun, join the process group (collectives time out after
    `timeout`)."""
    kind = device_kind(device)
    if "RANK" not in os.environ:
        return Processes(0, 1, 0, torch.device(kind))
    local_rank = int(os.environ["LOCAL_RANK"])
    if kind == "cuda":
        index = pick_cuda_index(local_rank, int(os.environ["LOCAL_WORLD_SIZE"]), torch.cuda.device_count())
        chosen = torch.device("cuda", index)
        torch.cuda.set_device(chosen)
        dist.init_process_group(backend="nccl", device_id=chosen, timeout=timeout)
    else:
        chosen = torch.device("cpu")
        dist.init_process_group(backend="gloo", timeout=timeout)
    return Processes(dist.get_rank(), dist.get_world_size(), local_rank, chosen)


def stop_processes(procs: Processes) -> None:
    if procs.distributed:
        dist.destroy_process_group()


def all_ranks_sum(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` summed over all ranks, in place (gloo has no average: callers divide)."""
    if dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's `obj` (anything picklable) on every rank; the other ranks' `obj` is ignored."""
    if not dist.is_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def barrier(procs: Processes) -> None:
    """Wait until every rank gets here (on NCCL, on this process's GPU)."""
    if not procs.distributed:
        return
    if procs.device.type == "cuda":
        dist.barrier(device_ids=[procs.device.index])
    else:
        dist.barrier()


def all_ranks_ok(ok: bool, procs: Processes) -> bool:
    """True on every rank when `ok` is True on every rank, else False on every rank: lets all ranks
    fail together when one of them cannot go on (for example, cannot read the checkpoint)."""
    if not procs.distributed:
        return ok
    flag = torch.tensor(int(ok), device=procs.device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
