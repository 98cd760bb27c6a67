"""Checkpoints: everything a run needs to continue as if it had never stopped.

OUT/checkpoint.pt holds the model, the optimizer (AdamW moments and step counts), the step, the
resolved config and the schedule it implies, the data cursor (shard, offset, epoch: the same on every
rank at a step boundary), the world size and every rank's RNG states (python, numpy, torch, CUDA).
Beside it, OUT/config.json and OUT/manifest.json (the token set's, with the tokenizer to decode with)
let `tokenmill sample` and people read the run without unpickling anything.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(out: Path, payload: dict[str, Any]) -> None:
    """Write checkpoint.pt (atomically: a crash mid-write leaves the previous one) and the JSON files."""
    out.mkdir(parents=True, exist_ok=True)
    partial = out / (CHECKPOINT + ".partial")
    torch.save(payload, partial)
    os.replace(partial, out / CHECKPOINT)
    (out / "config.json").write_text(json.dumps(payload["config"], indent=2) + "\n")
    (out / "manifest.json").write_text(json.dumps(payload["manifest"], indent=2) + "\n")


def load(out: Path) -> dict[str, Any]:
    """The payload, on the CPU (RNG states must be CPU tensors; weights are copied where they go)."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # weights_only stays off: the payload holds RNG states (tuples, numpy arrays) next to tensors.
    return torch.load(path, map_location="cpu", weights_only=False)
