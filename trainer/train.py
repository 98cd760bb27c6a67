"""Training: next-token prediction over a token set, in one process or in several under torchrun (DDP).

One optimizer step = `batch_size` sequences = micro-batches of `micro_batch_size` on each of W ranks,
accumulated batch_size / (micro_batch_size * W) times; gradients are averaged across ranks once per step
(DDP's all-reduce, skipped on the accumulation passes before the last). Then clipping to grad_clip,
AdamW (weight decay only on matrices and embeddings, decoupled: scaled by the learning rate, never
added to the gradient) and the schedule's next rate. On CUDA: bf16 autocast, TF32 for the float32 rest,
fused AdamW, optional torch.compile.

Logged steps go to the console and to OUT/metrics.jsonl, one JSON object each: step, loss (the step's
mean over all ranks), lr, tokens_per_s (all ranks; each process's first WARMUP_STEPS steps, which hold
compilation and allocator warm-up, and the time spent evaluating or checkpointing, left out), mfu
(trainer.mfu; None off the peak table) and val_loss on evaluated steps.
"""

from __future__ import annotations

import json
import os
import random
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from tokenmill.trainer import checkpoint
from tokenmill.trainer.config import TrainConfig
from tokenmill.trainer.data import RankBatches, TokenSet, WindowStream, open_token_set
from tokenmill.trainer.mfu import flops_per_token, mfu, peak_flops
from tokenmill.trainer.model import GPT, GPTConfig
from tokenmill.trainer.schedule import Schedule

WARMUP_STEPS = 3  # per process, left out of tokens/s
VOCAB_MULTIPLE = 64


@dataclass(frozen=True)
class Processes:
    """This process's place among the torchrun processes (or alone)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return dist.is_initialized()

    @property
    def main(self) -> bool:
        return self.rank == 0


def start_processes(device: str | None) -> Processes:
    """Join the process group when torchrun started us (gloo on CPU, nccl on CUDA); pick the device."""
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda, but torch sees no CUDA device")
    if "RANK" not in os.environ:
        return Processes(0, 1, torch.device(kind))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    chosen = torch.device("cuda", local_rank) if kind == "cuda" else torch.device("cpu")
    if kind == "cuda":
        torch.cuda.set_device(chosen)
    dist.init_process_group(backend="nccl" if kind == "cuda" else "gloo")
    return Processes(dist.get_rank(), dist.get_world_size(), chosen)


def resolve(config: TrainConfig, token_set: TokenSet) -> TrainConfig:
    """The config with the vocabulary fixed: the manifest's, rounded up, unless the config sets one."""
    vocab = config.model.vocab_size
    if vocab is None:
        vocab = -(-token_set.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    if vocab < token_set.vocab_size:
        raise ValueError(
            f"model.vocab_size {vocab} is smaller than the token set's vocabulary {token_set.vocab_size}"
        )
    return replace(config, model=replace(config.model, vocab_size=vocab))


def _differences(saved: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(given)):
        old, new = saved.get(key), given.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            diffs += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            diffs.append(f"{prefix}{key}: checkpoint {old!r}, now {new!r}")
    return diffs


def _check_resumable(state: dict[str, Any], config: TrainConfig, token_set: TokenSet, world: int) -> None:
    diffs = _differences(state["config"], config.to_dict())
    if diffs:
        raise ValueError("the checkpoint was written with another config:\n  " + "\n  ".join(diffs))
    if state["manifest"]["shards"] != token_set.manifest["shards"]:
        raise ValueError(f"the checkpoint was trained on other shards than those in {token_set.root}")
    if state["world_size"] != world:
        raise ValueError(
            f"the checkpoint was written by {state['world_size']} processes; resume it with as many "
            f"(RNG streams are per rank), not {world}"
        )


def make_optimizer(model: GPT, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},  # biases, norm gains
    ]
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=1e-8, fused=device.type == "cuda"
    )


def _autocast(device: torch.device) -> AbstractContextManager:
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


def _all_ranks_sum(tensor: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(tensor)  # gloo has no AVG: sum, and the caller divides
    return tensor


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, stream: WindowStream, micro_batch: int, max_windows: int | None, procs: Processes
) -> float:
    """Mean loss over the first `max_windows` windows of a non-wrapping stream (all of it if None),
    rank r taking windows r, r + W, ...; every window has seq_len targets, so this is the token mean."""
    model.eval()
    stream.rewind()
    totals = torch.zeros(2, dtype=torch.float64, device=procs.device)  # loss sum, windows
    windows: list[np.ndarray] = []

    def flush() -> None:
        batch = _to_device(torch.from_numpy(np.stack(windows)), procs.device)
        with _autocast(procs.device):
            loss = model(batch[:, :-1], batch[:, 1:])
        totals[0] += loss.double() * len(windows)
        totals[1] += len(windows)
        windows.clear()

    index = 0
    while max_windows is None or index < max_windows:
        try:
            if index % procs.world_size == procs.rank:
                windows.append(stream.next_window())
            else:
                stream.skip()
        except StopIteration:
            break
        index += 1
        if len(windows) == micro_batch:
            flush()
    if windows:
        flush()
    _all_ranks_sum(totals)
    model.train()
    if totals[1] == 0:
        raise ValueError("the validation shard is shorter than one window")
    return (totals[0] / totals[1]).item()


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _metrics_upto(path: Path, step: int) -> None:
    """Drop records past `step` (a run that went on after its last checkpoint, or never wrote one):
    those steps are done again."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in lines))


def _console(record: dict[str, Any], stop: int) -> str:
    parts = [f"step {record['step']:>6}/{stop}", f"loss {record['loss']:.4f}"]
    if "val_loss" in record:
        parts.append(f"val {record['val_loss']:.4f}")
    parts.append(f"lr {record['lr']:.2e}")
    if record["tokens_per_s"] is not None:
        parts.append(f"{record['tokens_per_s']:,.0f} tok/s")
    if record["mfu"] is not None:
        parts.append(f"mfu {100 * record['mfu']:.1f}%")
    return " | ".join(parts)


def train(
    data: str | Path,
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    max_steps: int | None = None,
    device: str | None = None,
) -> list[dict[str, Any]]:
    """Train until step `max_steps` (default: the config's), checkpointing into `out`; returns the
    records logged by this process (rank 0's are also in out/metrics.jsonl)."""
    procs = start_processes(device)
    try:
        return _train(Path(data), config, Path(out), resume, max_steps, procs)
    finally:
        if procs.distributed:
            dist.destroy_process_group()


def _train(
    data: Path, config: TrainConfig, out: Path, resume: bool, max_steps: int | None, procs: Processes
) -> list[dict[str, Any]]:
    token_set = open_token_set(data)
    config = resolve(config, token_set)
    stop = config.max_steps if max_steps is None else max_steps
    if not 0 < stop <= config.max_steps:
        raise ValueError(f"--max-steps {stop} must lie in 1..{config.max_steps} (the schedule's length)")
    per_pass = config.micro_batch_size * procs.world_size
    if config.batch_size % per_pass:
        raise ValueError(
            f"batch_size {config.batch_size} is not a multiple of micro_batch_size x processes = {per_pass}"
        )
    accumulation = config.batch_size // per_pass
    has_checkpoint = (out / checkpoint.CHECKPOINT).is_file()
    if has_checkpoint and not resume:
        raise FileExistsError(f"{out} already holds a checkpoint: pass --resume, or choose another --out")
    state = checkpoint.load(out) if resume and has_checkpoint else None
    if state is not None:
        _check_resumable(state, config, token_set, procs.world_size)

    device = procs.device
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
    _seed(config.seed)  # the same initial weights on every rank
    raw = GPT(GPTConfig(**asdict(config.model))).to(device)
    optimizer = make_optimizer(raw, config, device)
    schedule = Schedule(
        config.schedule,
        config.lr,
        config.min_lr,
        config.warmup_steps,
        config.max_steps,
        config.decay_fraction,
    )
    seq_len = config.model.block_size
    stream = WindowStream(token_set.train, seq_len, config.align_to_documents, wrap=True)
    batches = RankBatches(stream, config.micro_batch_size, procs.rank, procs.world_size)
    val_stream = WindowStream((token_set.val,), seq_len, config.align_to_documents, wrap=False)
    metrics_path = out / "metrics.jsonl"
    step = 0
    if state is None:
        _seed(config.seed + procs.rank)  # per-rank streams from here on (dropout)
    else:
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        stream.load_state(state["data"])
        checkpoint.set_rng_state(state["rng"][procs.rank])
    del state
    if procs.main:
        _metrics_upto(metrics_path, step)

    compiled = torch.compile(raw) if config.compile else raw
    model = compiled
    if procs.distributed:
        model = DistributedDataParallel(
            compiled, device_ids=[device.index] if device.type == "cuda" else None
        )
    flops_token, peak = flops_per_token(raw), peak_flops(device)
    tokens_per_step = config.batch_size * seq_len
    if procs.main:
        out.mkdir(parents=True, exist_ok=True)
        params = sum(p.numel() for p in {id(p): p for p in raw.parameters()}.values())
        print(
            f"train: {params:,} parameters, {tokens_per_step:,} tokens/step "
            f"({procs.world_size} x {config.micro_batch_size} x {seq_len} x {accumulation} accumulation), "
            f"{device.type}{'' if peak else ' (no peak FLOPs known: mfu null)'}, step {step} -> {stop}"
        )

    def save() -> None:
        rng = [None] * procs.world_size
        if procs.distributed:
            dist.all_gather_object(rng, checkpoint.rng_state())
        else:
            rng[0] = checkpoint.rng_state()
        if procs.main:
            payload = {
                "config": config.to_dict(),
                "step": step,
                "model": raw.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": asdict(schedule),
                "data": stream.state(),
                "world_size": procs.world_size,
                "rng": rng,
                "manifest": token_set.manifest,
            }
            checkpoint.save(out, payload)

    records = []
    steps_here, timed_steps, timer = 0, 0, time.perf_counter()
    model.train()
    while step < stop:
        lr = schedule(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=device)
        for micro in range(accumulation):
            inputs, targets = (_to_device(t, device) for t in batches.next_batch())
            last = micro == accumulation - 1
            with model.no_sync() if procs.distributed and not last else nullcontext():
                with _autocast(device):
                    loss = model(inputs, targets)
                (loss / accumulation).backward()
            loss_sum += loss.detach()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(raw.parameters(), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        steps_here += 1
        if steps_here == WARMUP_STEPS:
            if device.type == "cuda":
                torch.cuda.synchronize()
            timed_steps, timer = 0, time.perf_counter()
        elif steps_here > WARMUP_STEPS:
            timed_steps += 1

        evaluating = step == stop or (config.val_every > 0 and step % config.val_every == 0)
        saving = step == stop or (config.checkpoint_every > 0 and step % config.checkpoint_every == 0)
        if not (evaluating or saving or step % config.log_every == 0):
            continue
        mean_loss = (_all_ranks_sum(loss_sum) / (accumulation * procs.world_size)).item()
        tokens_per_s = timed_steps * tokens_per_step / (time.perf_counter() - timer) if timed_steps else None
        record: dict[str, Any] = {"step": step, "loss": mean_loss, "lr": lr, "tokens_per_s": tokens_per_s}
        record["mfu"] = (
            None if tokens_per_s is None else mfu(flops_token, tokens_per_s, peak, procs.world_size)
        )
        if evaluating:
            record["val_loss"] = evaluate(
                compiled, val_stream, config.micro_batch_size, config.val_windows, procs
            )
        if saving:
            save()
        records.append(record)
        if procs.main:
            print(_console(record, stop), flush=True)
            with metrics_path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        timed_steps, timer = 0, time.perf_counter()
    return records
