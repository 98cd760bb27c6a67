"""Training configs: the named ones (`tiny`, `gpt2-124m`) and JSON files that start from one of them.

A config file is a JSON object of TrainConfig fields, with the model's fields under "model", and an
optional "base" naming the config it overrides (default "tiny"); an unknown key is an error, not a
silent no-op. `model.vocab_size` may stay null: the trainer then takes the manifest's vocabulary
rounded up to a multiple of 64 (faster matmuls; the extra ids never occur as targets).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelSettings:
    """GPTConfig's fields before the vocabulary is known (see trainer.model.GPTConfig)."""

    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int | None = None
    dropout: float = 0.0
    bias: bool = True
    rotary: bool = False
    rope_base: float = 10000.0
    norm: str = "layernorm"
    qk_norm: bool = False
    tie_embeddings: bool = True


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSettings
    batch_size: int  # sequences per optimizer step, all ranks together
    micro_batch_size: int  # sequences per forward pass on one rank; the rest is gradient accumulation
    max_steps: int  # the length of the run and of its learning-rate schedule
    lr: float
    min_lr: float
    warmup_steps: int
    schedule: str = "cosine"  # or "wsd": warmup, stable, then linear decay over decay_fraction
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    pack_lookahead: int = 1024  # documents the best-fit packer chooses among (trainer/packing.py)
    val_every: int = 100  # 0: only at the end
    val_windows: int | None = None  # sequences of the val shard per evaluation (None: all of it)
    checkpoint_every: int = 500  # 0: only at the end
    log_every: int = 1
    compile: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.schedule not in ("cosine", "wsd"):
            raise ValueError(f"schedule must be 'cosine' or 'wsd', not {self.schedule!r}")
        if not 0 <= self.warmup_steps < self.max_steps:
            raise ValueError(
                f"warmup_steps {self.warmup_steps} must lie in 0..max_steps - 1 ({self.max_steps - 1})"
            )
        if self.pack_lookahead < 1:
            raise ValueError(f"pack_lookahead {self.pack_lookahead} must be 1 or more")
        if self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} is not a multiple of micro_batch_size {self.micro_batch_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


NAMED: dict[str, dict[str, Any]] = {
    # Seconds per step on a laptop CPU: a smoke test of the whole path with the modern options on.
    "tiny": {
        "model": {
            "block_size": 64,
            "n_layer": 2,
            "n_head": 2,
            "n_embd": 64,
            "rotary": True,
            "norm": "rmsnorm",
            "qk_norm": True,
            "bias": False,
        },
        "batch_size": 16,
        "micro_batch_size": 16,
        "max_steps": 200,
        "lr": 1e-2,
        "min_lr": 1e-3,
        "warmup_steps": 10,
        "val_every": 50,
        "val_windows": 64,
        "checkpoint_every": 100,
    },
    # GPT-2 small exactly (learned positions, LayerNorm with biases, tied head), trained as in the llm.c
    # reproduction: 524,288 tokens per step, 19,073 steps = 10B tokens, peak lr 6e-4 after 700 steps.
    "gpt2-124m": {
        "model": {"block_size": 1024, "n_layer": 12, "n_head": 12, "n_embd": 768},
        "batch_size": 512,
        "micro_batch_size": 16,
        "max_steps": 19073,
        "lr": 6e-4,
        "min_lr": 6e-5,
        "warmup_steps": 700,
        "val_every": 250,
        "val_windows": 1280,
        "checkpoint_every": 2000,
        "log_every": 10,
        "compile": True,
    },
}


def with_run_length(config: TrainConfig, steps: int) -> TrainConfig:
    """The config stretched or shrunk to `steps` optimizer steps (`--max-steps`): the schedule spans
    them, and the warm-up keeps its share of the run (the decay already does: cosine to the last step,
    WSD over decay_fraction), so a config tuned at one length means the same shape at another."""
    if steps < 1:
        raise ValueError(f"a run needs 1 or more steps, not {steps}")
    if steps == config.max_steps:
        return config
    warmup = min(round(config.warmup_steps * steps / config.max_steps), steps - 1)
    return dataclasses.replace(config, max_steps=steps, warmup_steps=warmup)


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """A config from a dict shaped like `to_dict`'s; unknown keys are errors."""
    for cls, values, where in ((TrainConfig, data, ""), (ModelSettings, data["model"], "model.")):
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(where + key for key in unknown)}")
    return TrainConfig(**{**data, "model": ModelSettings(**data["model"])})


def load_config(name_or_path: str) -> TrainConfig:
    """A named config, or a JSON file of overrides on top of its "base" (default "tiny")."""
    if name_or_path in NAMED:
        return from_dict(json.loads(json.dumps(NAMED[name_or_path])))
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"config {name_or_path!r} is neither {' nor '.join(NAMED)} nor a file")
    overrides = json.loads(path.read_text())
    base_name = overrides.pop("base", "tiny")
    if base_name not in NAMED:
        raise ValueError(f"{path}: base {base_name!r} is not one of {sorted(NAMED)}")
    data = json.loads(json.dumps(NAMED[base_name]))
    data["model"].update(overrides.pop("model", {}))
    data.update(overrides)
    return from_dict(data)
