"""The optimizer-step loop that pretraining (trainer/train.py) and fine-tuning (trainer/sft.py) share.

One optimizer step = `batch_size` windows = micro-batches of `micro_batch_size` on each of W ranks,
accumulated batch_size / (micro_batch_size * W) times. The loss is the mean over the step's TRAINED
targets on all ranks (masked targets, -1, are padding or tokens a fine-tune does not learn): every
micro-batch adds its summed loss divided by the step's global target count, so a micro-batch with more
targets weighs more, as it should, and a fully masked one adds nothing. DDP averages gradients over
ranks (its all-reduce runs once per step, on the last micro-batch), hence the factor W. Then clipping
to grad_clip, AdamW and the schedule's next rate. On CUDA: bf16 autocast, TF32 for the float32 rest,
fused AdamW, optional torch.compile.

Logged steps go to the console and to OUT/metrics.jsonl, one JSON object each: step, loss, lr,
tokens_per_s (all ranks; each process's first WARMUP_STEPS steps, which hold compilation and allocator
warm-up, and the time spent evaluating or checkpointing, left out), mfu (trainer.mfu; None off the peak
table), epoch, kind ("pretrain" or "sft") and val_loss on evaluated steps.

Checkpoints and resume are decided by rank 0 alone, so nodes with their own disks never disagree: it
looks for OUT's checkpoint and tells every rank the step and path; each rank loads it, and if any rank
cannot, every rank stops with that rank's reason instead of some of them waiting forever. After rank 0
writes a checkpoint, all ranks wait for it (a barrier), so no rank runs ahead of a save that may fail.
"""

from __future__ import annotations

import json
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from tokenmill.pipeline.errors import UserError
from tokenmill.trainer import checkpoint
from tokenmill.trainer.config import TrainConfig
from tokenmill.trainer.data import PackedWindows, RankBatches
from tokenmill.trainer.distributed import (
    Processes,
    all_ranks_ok,
    all_ranks_sum,
    barrier,
    broadcast_from_main,
)
from tokenmill.trainer.mfu import flops_per_token, mfu, peak_flops
from tokenmill.trainer.model import GPT, autocast
from tokenmill.trainer.schedule import Schedule

WARMUP_STEPS = 3  # per process, left out of tokens/s


@dataclass
class Job:
    """Everything the loop needs, prepared by train.py or sft.py (the model already holds its start)."""

    procs: Processes
    config: TrainConfig  # resolved: vocabulary and run length fixed
    out: Path
    model: GPT  # on procs.device
    windows: PackedWindows  # the training stream of all ranks; each takes its own share
    heldout: PackedWindows  # the validation windows, a non-wrapping stream (rewound for each pass)
    kind: str  # "pretrain" or "sft": metrics records and checkpoints say which
    stop: int  # the last step this invocation runs (<= config.max_steps)
    step: int = 0  # the step the model and optimizer are at
    evaluate_first: bool = False  # log the held-out loss before the first step (a fine-tune's base)
    payload: dict[str, Any] = field(default_factory=dict)  # checkpoint entries of the caller's own
    optimizer: torch.optim.AdamW = field(init=False)
    batches: RankBatches = field(init=False)

    def __post_init__(self) -> None:
        procs = self.procs
        self.optimizer = make_optimizer(self.model, self.config, procs.device)
        self.batches = RankBatches(self.windows, self.config.micro_batch_size, procs.rank, procs.world_size)

    @property
    def schedule(self) -> Schedule:
        config = self.config
        return Schedule(
            config.schedule,
            config.lr,
            config.min_lr,
            config.warmup_steps,
            config.max_steps,
            config.decay_fraction,
        )


def make_optimizer(model: GPT, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices and embeddings only (decoupled: scaled by the rate)."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},  # biases, norm gains
    ]
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=1e-8, fused=device.type == "cuda"
    )


def find_checkpoint(out: Path, resume: bool, procs: Processes) -> dict[str, Any] | None:
    """The checkpoint to resume from, as rank 0 sees OUT, loaded by every rank; None to start fresh."""
    found = broadcast_from_main(str(out) if (out / checkpoint.CHECKPOINT).is_file() else None)
    if found is None:
        return None
    if not resume:
        raise UserError(f"{out} already holds a checkpoint: pass --resume, or choose another --out")
    state, problem = None, ""
    try:
        state = checkpoint.load(Path(found))
    except Exception as exc:  # any rank's failure must reach every rank, whatever it is
        problem = f"{type(exc).__name__}: {exc}"
    if not all_ranks_ok(state is not None, procs):
        path = f"{found}/{checkpoint.CHECKPOINT}"
        if problem:
            raise UserError(
                f"rank {procs.rank} cannot resume from {path}, where rank 0 resumes ({problem}): OUT must "
                "be a directory every node reads (shared storage), or hold a copy of rank 0's checkpoint"
            )
        raise UserError(f"rank {procs.rank} stops: another rank cannot read {path}, where rank 0 resumes")
    return state


def _differences(saved: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(given)):
        old, new = saved.get(key), given.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            diffs += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            diffs.append(f"{prefix}{key}: checkpoint {old!r}, now {new!r}")
    return diffs


def check_resumable(state: dict[str, Any], config: TrainConfig, procs: Processes) -> None:
    if "documents" not in state["data"]:
        raise UserError(
            "the checkpoint holds a data position from before best-fit packing (a window cursor), which "
            "no longer describes a place in the data: start a new run in another --out"
        )
    diffs = _differences(state["config"], config.to_dict())
    if diffs:
        raise UserError("the checkpoint was written with another config:\n  " + "\n  ".join(diffs))
    if state["world_size"] != procs.world_size:
        raise UserError(
            f"the checkpoint was written by {state['world_size']} processes; resume it with as many "
            f"(RNG streams are per rank), not {procs.world_size}"
        )


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def start(job: Job, state: dict[str, Any] | None) -> None:
    """A fresh run seeds each rank's own RNG streams (dropout); a resumed one restores the model,
    optimizer, data position and this rank's RNG exactly as the checkpoint holds them."""
    if state is None:
        seed_everything(job.config.seed + job.procs.rank)
        return
    job.model.load_state_dict(state["model"])
    job.optimizer.load_state_dict(state["optimizer"])
    job.step = state["step"]
    job.windows.load_state(state["data"])
    checkpoint.set_rng_state(state["rng"][job.procs.rank], job.procs.device)


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    windows: PackedWindows,
    micro_batch: int,
    max_windows: int | None,
    procs: Processes,
) -> float:
    """Mean loss per trained target over the first `max_windows` windows (all if None), rank r taking
    windows r, r + W, ... A short last batch is filled with fully masked rows, so every forward pass
    has the training shape (a compiled model never meets a new one)."""
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=procs.device)  # loss sum, targets
    rows: list[tuple[np.ndarray, np.ndarray]] = []

    def flush() -> None:
        width = len(rows[0][0])
        padding = [(np.zeros(width, np.int64), np.full(width, -1, np.int64))] * (micro_batch - len(rows))
        inputs, targets = (
            _to_device(torch.from_numpy(np.stack(column)), procs.device)
            for column in zip(*rows, *padding, strict=True)
        )
        with autocast(procs.device):
            totals[0] += model(inputs, targets, reduction="sum").double()
        totals[1] += (targets >= 0).sum()
        rows.clear()

    index = 0
    while max_windows is None or index < max_windows:
        try:
            if index % procs.world_size == procs.rank:
                rows.append(windows.next_window())
            else:
                windows.skip()
        except StopIteration:
            break
        index += 1
        if len(rows) == micro_batch:
            flush()
    if rows:
        flush()
    all_ranks_sum(totals)
    model.train()
    if totals[1] == 0:
        raise ValueError("the validation data holds no trained target")
    return (totals[0] / totals[1]).item()


def _metrics_upto(path: Path, step: int) -> None:
    """Drop records past `step` (a run that went on after its last checkpoint, or never wrote one):
    those steps are done again."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in lines))


def _console(record: dict[str, Any], stop: int) -> str:
    parts = [f"step {record['step']:>6}/{stop}"]
    if record["loss"] is not None:
        parts.append(f"loss {record['loss']:.4f}")
    if "val_loss" in record:
        parts.append(f"val {record['val_loss']:.4f}")
    parts.append(f"lr {record['lr']:.2e}")
    if record["tokens_per_s"] is not None:
        parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    if record["mfu"] is not None:
        parts.append(f"mfu {100 * record['mfu']:.1f}%")
    return " | ".join(parts)


def fit(job: Job) -> list[dict[str, Any]]:
    """Run steps job.step + 1 .. job.stop; returns the records this process logged (rank 0's are also
    in OUT/metrics.jsonl)."""
    procs, config, raw = job.procs, job.config, job.model
    device = procs.device
    per_pass = config.micro_batch_size * procs.world_size
    if config.batch_size % per_pass:
        raise UserError(
            f"batch_size {config.batch_size} is not a multiple of micro_batch_size x processes = {per_pass}: "
            "change the config or the number of processes"
        )
    accumulation = config.batch_size // per_pass
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    compiled = torch.compile(raw) if config.compile else raw
    model: torch.nn.Module = compiled
    if procs.distributed:
        model = DistributedDataParallel(
            compiled, device_ids=[device.index] if device.type == "cuda" else None
        )
    schedule, seq_len = job.schedule, config.model.block_size
    flops_token, peak = flops_per_token(raw), peak_flops(device)
    tokens_per_step = config.batch_size * seq_len
    metrics_path = job.out / "metrics.jsonl"
    if procs.main:
        job.out.mkdir(parents=True, exist_ok=True)
        _metrics_upto(metrics_path, job.step)
        params = sum(p.numel() for p in {id(p): p for p in raw.parameters()}.values())
        print(
            f"{job.kind}: {params:,} parameters, {tokens_per_step:,} tokens/step "
            f"({procs.world_size} x {config.micro_batch_size} x {seq_len} x {accumulation} accumulation), "
            f"{device}{'' if peak else ' (no peak FLOPs known: mfu null)'}, "
            f"step {job.step} -> {job.stop} of {config.max_steps}",
            flush=True,
        )

    def held_out_loss() -> float:
        job.heldout.rewind()
        return evaluate(compiled, job.heldout, config.micro_batch_size, config.val_windows, procs)

    def log(record: dict[str, Any]) -> None:
        record |= {"epoch": job.windows.state()["epoch"], "kind": job.kind}
        records.append(record)
        if procs.main:
            print(_console(record, job.stop), flush=True)
            with metrics_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")

    def save() -> None:
        rng = [None] * procs.world_size
        if procs.distributed:
            torch.distributed.all_gather_object(rng, checkpoint.rng_state(device))
        else:
            rng[0] = checkpoint.rng_state(device)
        if procs.main:
            payload = {
                "config": config.to_dict(),
                "step": job.step,
                "model": raw.state_dict(),
                "optimizer": job.optimizer.state_dict(),
                "schedule": asdict(schedule),
                "data": job.windows.state(),
                "world_size": procs.world_size,
                "rng": rng,
                "kind": job.kind,
                **job.payload,
            }
            checkpoint.save(job.out, payload)
        barrier(procs)

    records: list[dict[str, Any]] = []
    if job.evaluate_first and job.step == 0:
        log(
            {
                "step": 0,
                "loss": None,
                "lr": 0.0,
                "tokens_per_s": None,
                "mfu": None,
                "val_loss": held_out_loss(),
            }
        )
    steps_here, timed_steps, timer = 0, 0, time.perf_counter()
    model.train()
    while job.step < job.stop:
        lr = schedule(job.step)
        for group in job.optimizer.param_groups:
            group["lr"] = lr
        micro_batches = [job.batches.next_batch() for _ in range(accumulation)]
        targets_here = sum(int((targets >= 0).sum()) for _, targets in micro_batches)
        step_targets = all_ranks_sum(torch.tensor(float(targets_here), device=device)).item()
        loss_sum = torch.zeros((), device=device)
        for index, batch in enumerate(micro_batches):
            inputs, targets = (_to_device(t, device) for t in batch)
            last = index == accumulation - 1
            with model.no_sync() if procs.distributed and not last else nullcontext():
                with autocast(device):
                    loss = model(inputs, targets, reduction="sum")
                (loss * (procs.world_size / max(step_targets, 1))).backward()
            loss_sum += loss.detach().float()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(raw.parameters(), config.grad_clip)
        job.optimizer.step()
        job.optimizer.zero_grad(set_to_none=True)
        job.step += 1
        steps_here += 1
        if steps_here == WARMUP_STEPS:
            if device.type == "cuda":
                torch.cuda.synchronize()
            timed_steps, timer = 0, time.perf_counter()
        elif steps_here > WARMUP_STEPS:
            timed_steps += 1

        step = job.step
        evaluating = step == job.stop or (config.val_every > 0 and step % config.val_every == 0)
        saving = step == job.stop or (config.checkpoint_every > 0 and step % config.checkpoint_every == 0)
        if not (evaluating or saving or step % config.log_every == 0):
            continue
        mean_loss = (all_ranks_sum(loss_sum) / max(step_targets, 1)).item()
        tokens_per_s = timed_steps * tokens_per_step / (time.perf_counter() - timer) if timed_steps else None
        record: dict[str, Any] = {"step": step, "loss": mean_loss, "lr": lr, "tokens_per_s": tokens_per_s}
        record["mfu"] = (
            None if tokens_per_s is None else mfu(flops_token, tokens_per_s, peak, procs.world_size)
        )
        if evaluating:
            record["val_loss"] = held_out_loss()
        if saving:
            save()
        log(record)
        timed_steps, timer = 0, time.perf_counter()
    return records
