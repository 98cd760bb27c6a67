"""SFT: supervised fine-tuning of a pretrained checkpoint on conversations, into an assistant.

    tokenmill sft --from CHECKPOINT --data CONVERSATIONS [--out DIR] [--epochs N] [--max-steps N]
                  [--lr LR] [--batch-size B] [--micro-batch-size M] [--holdout F] [--seed S]
                  [--resume] [--device cpu|cuda] [--s3-endpoint URL] [--dist-timeout SECONDS]
    torchrun --nproc_per_node=G jobs/sft.py --from ... (the same options)

CHECKPOINT is a `tokenmill train` --out. CONVERSATIONS is a JSONL (optionally .gz) or Parquet file, or
a directory of them, local or s3://, with one conversation per row in the common chat format:
{"messages": [{"role": "system" | "user" | "assistant", "content": "..."}, ...]} (system optional and
first, then user and assistant turns alternating, ending with the assistant). Rows that break it (an
unknown role, empty, not alternating, longer than the model's context, not JSON) are counted by
reason in DIR/sft_data.json and skipped. The loss is on the assistant's tokens and its end token only.
DIR (default out/sft) receives checkpoint.pt, config.json, manifest.json, metrics.jsonl (held-out loss
of the base model at step 0, then per step) and sft_data.json; `tokenmill chat --checkpoint DIR` talks
to the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from tokenmill.jobs.stages.settings import option
from tokenmill.pipeline.errors import UserError

SUMMARY = "a pretrained checkpoint + conversations -> an assistant (supervised fine-tuning)"


@dataclass(frozen=True, kw_only=True)
class SftSettings:
    base: str = option(
        help="a `tokenmill train` --out to start from", flags=("--from",), metavar="CHECKPOINT"
    )
    data: str = option(
        help="conversations: JSONL or Parquet, a file or directory, local or s3://", metavar="PATH"
    )
    out: str = option("out/sft", "checkpoints and metrics (default out/sft)", metavar="DIR")
    epochs: int = option(3, "passes over the training conversations (default 3)", metavar="N")
    max_steps: int | None = option(None, "the run's length in steps (overrides --epochs)", metavar="N")
    lr: float | None = option(None, "peak learning rate (default: the base config's / 10)", metavar="LR")
    batch_size: int = option(32, "windows per optimizer step, all processes (default 32)", metavar="B")
    micro_batch_size: int | None = option(None, "windows per forward pass (default: the base's)", metavar="M")
    holdout: float = option(0.1, "share of conversations held out for the loss (default 0.1)", metavar="F")
    seed: int = option(0, "seed of the held-out split and dropout (default 0)", metavar="S")
    resume: bool = option(False, "continue from DIR's checkpoint if there is one")
    device: str | None = option(None, "default: cuda if present", choices=("cpu", "cuda"))
    s3_endpoint: str | None = option(None, "S3-compatible endpoint (also AWS_ENDPOINT_URL)", metavar="URL")
    dist_timeout: int = option(1800, "seconds a rank waits for the others (default 1800)", metavar="S")

    def __post_init__(self) -> None:
        for flag, value in (
            ("--epochs", self.epochs),
            ("--max-steps", self.max_steps),
            ("--batch-size", self.batch_size),
            ("--micro-batch-size", self.micro_batch_size),
            ("--dist-timeout", self.dist_timeout),
        ):
            if value is not None and value < 1:
                raise UserError(f"{flag} {value}: give 1 or more")
        if not 0 < self.holdout < 1:
            raise UserError(f"--holdout {self.holdout}: give a share in (0, 1), e.g. 0.1")
        if self.lr is not None and self.lr <= 0:
            raise UserError(f"--lr {self.lr}: give a positive learning rate")


def check_sft(settings: SftSettings) -> None:
    if "://" not in settings.data and not Path(settings.data).exists():
        raise UserError(
            f"--data {settings.data} does not exist: give a JSONL or Parquet file of conversations"
        )


def run_sft(settings: SftSettings) -> dict[str, Any]:
    from tokenmill.pipeline.storage import S3Options
    from tokenmill.trainer.sft import FineTune, fine_tune

    fine_tune(
        settings.base,
        settings.data,
        settings.out,
        FineTune(
            epochs=settings.epochs,
            max_steps=settings.max_steps,
            lr=settings.lr,
            batch_size=settings.batch_size,
            micro_batch_size=settings.micro_batch_size,
            holdout=settings.holdout,
            seed=settings.seed,
        ),
        resume=settings.resume,
        device=settings.device,
        s3=S3Options(endpoint_url=settings.s3_endpoint),
        timeout=timedelta(seconds=settings.dist_timeout),
    )
    return {}
