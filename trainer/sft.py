"""Supervised fine-tuning: a pretrained checkpoint becomes an assistant by training on conversations.

The chat format is trainer/chat.py's: four special tokens after the base tokenizer's vocabulary
(`<|system|>`, `<|user|>`, `<|assistant|>`, `<|end|>` at ids n_vocab .. n_vocab + 3; 50257..50260 for
gpt2), each message `<|role|>` content `<|end|>`. The base model is extended, not retrained: when its
padded vocabulary already has rows for those ids (gpt2's 50,257 tokens are padded to 50,304), the rows
are set to the mean of the trained token rows, a neutral start; otherwise the embedding (and an untied
head) grow to the next multiple of 64 with the new rows at that mean.

Only the assistant's tokens and the `<|end|>` that closes each assistant message are targets; the rest
is context. Conversations are packed whole into windows of the base's block_size + 1 tokens (best fit,
never cut: trainer/packing.py) and the rest of a window is padding. A held-out split (by a hash of each
conversation, so stable under reordering) is evaluated before the first step, which is the base model's
held-out loss, at the end of every epoch and at the end; metrics.jsonl has every record with
"kind": "sft". OUT/sft_data.json accounts for every input row: trained, held out, or skipped by reason.

The run length is --epochs passes over the training conversations, or --max-steps; the rest of the
settings come from the base config: model, dropout, AdamW, clipping, with a peak learning rate a tenth
of the base's unless given, a warm-up of 5% of the steps and a cosine decay to a tenth of the peak.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options
from tokenmill.tokenizer.encodings import load_encoding
from tokenmill.trainer import checkpoint
from tokenmill.trainer.chat import CHAT_TOKENS, ConversationSet, chat_encoding, load_conversations
from tokenmill.trainer.config import TrainConfig, from_dict
from tokenmill.trainer.data import MaskedDocuments, PackedWindows
from tokenmill.trainer.distributed import Processes, start_processes, stop_processes
from tokenmill.trainer.loop import Job, check_resumable, find_checkpoint, fit, seed_everything, start
from tokenmill.trainer.model import GPT, GPTConfig
from tokenmill.trainer.packing import coverage
from tokenmill.trainer.train import VOCAB_MULTIPLE

WARMUP_SHARE = 0.05
DATA_REPORT = "sft_data.json"


@dataclass(frozen=True)
class FineTune:
    """What `tokenmill sft` asks for, besides the base checkpoint and the conversations."""

    epochs: int = 3
    max_steps: int | None = None  # overrides epochs
    lr: float | None = None  # default: the base config's lr / 10
    batch_size: int = 32  # windows per optimizer step, all ranks together
    micro_batch_size: int | None = None  # default: the base's, at most batch_size
    holdout: float = 0.1
    seed: int = 0


def _base(base: Path) -> dict[str, Any]:
    if not (base / checkpoint.CHECKPOINT).is_file():
        raise UserError(f"--from {base}: no {checkpoint.CHECKPOINT} there; give a `tokenmill train` --out")
    return checkpoint.load(base, parts=("config", "model", "manifest", "chat"))


def chat_rows(state: dict[str, torch.Tensor], first: int, vocab: int) -> dict[str, torch.Tensor]:
    """The embedding (and an untied head) with `vocab` rows; the chat tokens' rows, from `first`, and any
    added padding rows at the mean of the rows below `first` (the base tokenizer's, all trained)."""
    rows = dict(state)
    for key in ("wte.weight", "head.weight"):
        old = state[key]
        grown = old.new_empty((vocab, old.size(1)))
        grown[: len(old)] = old
        grown[first:] = old[:first].mean(dim=0)
        rows[key] = grown
    return rows


def _config(
    base: TrainConfig, vocab: int, settings: FineTune, steps: int, steps_per_epoch: int
) -> TrainConfig:
    micro = min(settings.micro_batch_size or base.micro_batch_size, settings.batch_size)
    lr = settings.lr if settings.lr is not None else base.lr / 10
    return replace(
        base,
        model=replace(base.model, vocab_size=vocab),
        batch_size=settings.batch_size,
        micro_batch_size=micro,
        max_steps=steps,
        lr=lr,
        min_lr=lr / 10,
        warmup_steps=min(round(WARMUP_SHARE * steps), steps - 1),
        schedule="cosine",
        val_every=steps_per_epoch,
        val_windows=None,
        checkpoint_every=0,
        log_every=1,
        seed=settings.seed,
    )


def fine_tune(
    base: str | Path,
    data: str,
    out: str | Path,
    settings: FineTune,
    resume: bool = False,
    device: str | None = None,
    s3: S3Options | None = None,
    timeout: timedelta = timedelta(minutes=30),
) -> list[dict[str, Any]]:
    """Fine-tune the checkpoint in `base` on the conversations at `data` into `out`."""
    procs = start_processes(device, timeout)
    try:
        return _fine_tune(Path(base), data, Path(out), settings, resume, s3 or S3Options(), procs)
    finally:
        stop_processes(procs)


def _write_data_report(out: Path, conversations: ConversationSet, report: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    counts = {
        "rows": conversations.rows,
        "train": len(conversations.train),
        "heldout": len(conversations.heldout),
        "skipped": dict(sorted(conversations.skipped.items())),
    }
    partial = out / (DATA_REPORT + ".partial")
    partial.write_text(json.dumps(counts | report, indent=2) + "\n")
    partial.replace(out / DATA_REPORT)


def _fine_tune(
    base: Path, data: str, out: Path, settings: FineTune, resume: bool, s3: S3Options, procs: Processes
) -> list[dict[str, Any]]:
    base_state = _base(base)
    base_config = from_dict(base_state["config"])
    manifest = base_state["manifest"]
    encoding = chat_encoding(load_encoding(manifest["tokenizer"]["source"], s3))
    first = encoding.n_vocab - len(CHAT_TOKENS)
    vocab = max(base_config.model.vocab_size, -(-encoding.n_vocab // VOCAB_MULTIPLE) * VOCAB_MULTIPLE)
    width = base_config.model.block_size + 1
    conversations = load_conversations(
        data, encoding, manifest["eot_id"], width, settings.holdout, settings.seed, s3
    )
    lookahead = base_config.pack_lookahead
    lengths = [len(tokens) for tokens, _ in conversations.train]
    packed = coverage(lengths, width, lookahead, split=False)
    steps_per_epoch = math.ceil(packed.windows / settings.batch_size)
    steps = settings.max_steps or settings.epochs * steps_per_epoch
    try:
        config = _config(base_config, vocab, settings, steps, steps_per_epoch)
    except ValueError as exc:
        raise UserError(f"sft: {exc}") from None
    state = find_checkpoint(out, resume, procs)
    if state is not None:
        check_resumable(state, config, procs)

    seed_everything(config.seed)
    model = GPT(GPTConfig(**asdict(config.model)))
    weights = base_state.pop("model")
    if base_state.get("chat") is None:  # a base model: make room for the chat tokens
        weights = chat_rows(weights, first, vocab)
    model.load_state_dict(weights)
    model.to(procs.device)
    del weights
    seq_len = config.model.block_size
    windows = PackedWindows(
        MaskedDocuments(conversations.train), seq_len, split=False, wrap=True, lookahead=lookahead
    )
    heldout = PackedWindows(
        MaskedDocuments(conversations.heldout), seq_len, split=False, wrap=False, lookahead=lookahead
    )

    chat = {"tokens": {token: first + index for index, token in enumerate(CHAT_TOKENS)}, "base": str(base)}
    job = Job(
        procs=procs,
        config=config,
        out=out,
        model=model,
        windows=windows,
        heldout=heldout,
        kind="sft",
        stop=steps,
        evaluate_first=True,
        payload={"manifest": manifest, "chat": chat},
    )
    start(job, state)
    del state
    if procs.main:
        report = {
            "windows_per_epoch": packed.windows,
            "steps_per_epoch": steps_per_epoch,
            "steps": steps,
            "padding_fraction": round(packed.padding_fraction, 4),
        }
        _write_data_report(out, conversations, report)
        skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(conversations.skipped.items()))
        print(
            f"sft: {conversations.rows:,} conversations read: {len(conversations.train):,} to train on, "
            f"{len(conversations.heldout):,} held out, skipped {skipped or 'none'}; "
            f"{packed.windows:,} windows per epoch ({100 * packed.padding_fraction:.1f}% padding), "
            f"{steps:,} steps",
            flush=True,
        )
    return fit(job)
