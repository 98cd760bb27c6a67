"""Train: a GPT on the token shards of `tokenmill tokenize`, on one device or many.

    tokenmill train --data ROOT/tokens/<tokenizer> --config tiny|gpt2-124m|FILE [--out DIR] [--resume]
                    [--max-steps N] [--stop-after N] [--device cpu|cuda] [--cache-dir DIR]
                    [--s3-endpoint URL] [--dist-timeout SECONDS]
    torchrun --nproc_per_node=G jobs/train.py --data ... (the same options; any torchrun layout)

--data may be a local directory or a remote one (s3://bucket/ROOT/tokens/<tokenizer>): remote shards are
fetched once per node into a local cache, each file checked against the manifest's sha256, then
memory-mapped like local ones. FILE is JSON: TrainConfig fields (trainer/config.py) over a "base"
config. --max-steps N sets the run's length (the schedule spans N steps; the warm-up keeps its share);
the checkpoint records it, so --resume alone continues the same run. --stop-after N ends this
invocation after step N with a checkpoint, the schedule unchanged, and --resume carries on exactly where
the run would have been. Under torchrun, rank 0 decides whether to resume and every rank must read
DIR's checkpoint (use storage all nodes share). DIR
(default out/train) receives checkpoint.pt, config.json, manifest.json and metrics.jsonl (one JSON
object per logged step).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from tokenmill.jobs.stages.settings import option
from tokenmill.pipeline.errors import UserError

SUMMARY = "token shards -> a GPT (one GPU or many under torchrun), checkpoints, metrics"


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    data: str = option(help="a token set, local or s3://: ROOT/tokens/<tokenizer>", metavar="DIR")
    config: str = option("tiny", "training config", metavar="tiny|gpt2-124m|FILE")
    out: str = option("out/train", "checkpoints and metrics (default out/train)", metavar="DIR")
    resume: bool = option(False, "continue from DIR's checkpoint if there is one")
    max_steps: int | None = option(None, "the run's length in steps (default: the config's)", metavar="N")
    stop_after: int | None = option(None, "end this invocation after step N; --resume continues", metavar="N")
    device: str | None = option(None, "default: cuda if present", choices=("cpu", "cuda"))
    cache_dir: str | None = option(
        None, "local cache for remote shards (default $TOKENMILL_CACHE or ~/.cache/tokenmill)", metavar="DIR"
    )
    s3_endpoint: str | None = option(None, "S3-compatible endpoint (also AWS_ENDPOINT_URL)", metavar="URL")
    dist_timeout: int = option(
        1800, "seconds a rank waits for the others in a collective before failing (default 1800)", metavar="S"
    )

    def __post_init__(self) -> None:
        for flag, steps in (("--max-steps", self.max_steps), ("--stop-after", self.stop_after)):
            if steps is not None and steps < 1:
                raise UserError(f"{flag} {steps}: give 1 or more")
        if self.dist_timeout < 1:
            raise UserError(f"--dist-timeout {self.dist_timeout}: give 1 or more seconds")


def run_train(settings: TrainSettings) -> dict[str, Any]:
    from tokenmill.pipeline.storage import S3Options
    from tokenmill.trainer.config import load_config
    from tokenmill.trainer.fetch import local_token_dir
    from tokenmill.trainer.train import train

    try:
        config = load_config(settings.config)
    except (OSError, ValueError) as exc:
        raise UserError(f"--config {settings.config}: {exc}") from None
    data = local_token_dir(settings.data, S3Options(endpoint_url=settings.s3_endpoint), settings.cache_dir)
    train(
        str(data),
        config,
        settings.out,
        settings.resume,
        settings.max_steps,
        settings.device,
        settings.stop_after,
        timedelta(seconds=settings.dist_timeout),
    )
    return {}
