"""Pretraining: next-token prediction over a token set, in one process or in several under torchrun.

The run is the config's max_steps long, or N with --max-steps N: the schedule then spans N steps and the
warm-up keeps its share (config.with_run_length). The resolved config is what the checkpoint records,
so a resume without --max-steps carries on the same run. --stop-after N ends this invocation after step
N with a checkpoint, the schedule unchanged, and --resume continues exactly where the run would have
been. Documents are packed into windows so that every token is trained once per epoch (trainer/data.py,
trainer/packing.py); the loop, its logging and checkpoints are trainer/loop.py.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from tokenmill.pipeline.errors import UserError
from tokenmill.trainer.config import TrainConfig, with_run_length
from tokenmill.trainer.data import PackedWindows, ShardDocuments, TokenSet, open_token_set
from tokenmill.trainer.distributed import Processes, start_processes, stop_processes
from tokenmill.trainer.loop import Job, check_resumable, find_checkpoint, fit, seed_everything, start
from tokenmill.trainer.model import GPT, GPTConfig
from tokenmill.trainer.packing import coverage

VOCAB_MULTIPLE = 64
DIST_TIMEOUT = timedelta(minutes=30)  # a collective waits this long for a slow or lost rank
COVERAGE_LIMIT = 2_000_000  # documents: above this the start-up packing report is skipped


def resolve(config: TrainConfig, vocab_size: int) -> TrainConfig:
    """The config with the vocabulary fixed: the tokenizer's, rounded up, unless the config sets one."""
    vocab = config.model.vocab_size
    if vocab is None:
        vocab = -(-vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    if vocab < vocab_size:
        raise UserError(f"model.vocab_size {vocab} is smaller than the token set's vocabulary {vocab_size}")
    return replace(config, model=replace(config.model, vocab_size=vocab))


def train(
    data: str | Path,
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    max_steps: int | None = None,
    device: str | None = None,
    stop_after: int | None = None,
    timeout: timedelta = DIST_TIMEOUT,
) -> list[dict[str, Any]]:
    """Train until step `stop_after` (default: the end of the run), checkpointing into `out`; returns
    the records logged by this process (rank 0's are also in out/metrics.jsonl)."""
    procs = start_processes(device, timeout)
    try:
        return _train(Path(data), config, Path(out), resume, max_steps, stop_after, procs)
    finally:
        stop_processes(procs)


def _report_packing(documents: ShardDocuments, config: TrainConfig) -> None:
    if len(documents.lengths) > COVERAGE_LIMIT:
        return
    report = coverage(documents.lengths, config.model.block_size + 1, config.pack_lookahead)
    print(
        f"packing: {report.windows:,} windows per epoch, {100 * report.tokens_trained_fraction:.2f}% of "
        f"the training tokens trained, {100 * report.documents_whole_fraction:.1f}% of "
        f"{len(documents.lengths):,} documents whole in one window",
        flush=True,
    )


def _train(
    data: Path,
    config: TrainConfig,
    out: Path,
    resume: bool,
    max_steps: int | None,
    stop_after: int | None,
    procs: Processes,
) -> list[dict[str, Any]]:
    token_set: TokenSet = open_token_set(data)
    state = find_checkpoint(out, resume, procs)
    steps = max_steps or (state["config"]["max_steps"] if state else config.max_steps)
    config = resolve(with_run_length(config, steps), token_set.vocab_size)
    stop = stop_after or steps
    if not 0 < stop <= steps:
        raise UserError(f"--stop-after {stop} must lie in 1..{steps} (the run's length)")
    if state is not None:
        check_resumable(state, config, procs)
        if state["manifest"]["shards"] != token_set.manifest["shards"]:
            raise UserError(f"the checkpoint was trained on other shards than those in {token_set.root}")
        if stop <= state["step"]:
            raise UserError(f"--stop-after {stop}: the checkpoint is already at step {state['step']}")

    seed_everything(config.seed)  # the same initial weights on every rank
    model = GPT(GPTConfig(**asdict(config.model))).to(procs.device)
    seq_len, lookahead = config.model.block_size, config.pack_lookahead
    documents = ShardDocuments(token_set.train)
    windows = PackedWindows(documents, seq_len, split=True, wrap=True, lookahead=lookahead)
    heldout = PackedWindows(
        ShardDocuments((token_set.val,)), seq_len, split=True, wrap=False, lookahead=lookahead
    )
    job = Job(
        procs=procs,
        config=config,
        out=out,
        model=model,
        windows=windows,
        heldout=heldout,
        kind="pretrain",
        stop=stop,
        payload={"manifest": token_set.manifest},
    )
    start(job, state)
    del state
    if procs.main:
        _report_packing(documents, config)
    return fit(job)
