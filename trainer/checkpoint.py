"""Checkpoints: everything a run needs to continue as if it had never stopped.

OUT/checkpoint.pt holds the model, the optimizer (AdamW moments and step counts), the step, the
resolved config and the schedule it implies, the data cursor (shard, offset, epoch: the same on every
rank at a step boundary), the world size and every rank's RNG states: python, numpy, torch, and the
CUDA generator of that rank's own device only, so that a resume whose ranks see their GPUs under other
indices, or fewer of them, restores each rank's stream onto whatever device it now has.
Beside it, OUT/config.json and OUT/manifest.json (the token set's, with the tokenizer to decode with)
let `tokenmill sample` and people read the run without unpickling anything.

Loading memory-maps the file and hands back only the parts asked for: sampling, chat and fine-tuning
read the weights and never bring the optimizer's moments (twice the model's size) into memory.
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


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's random streams: the host's, and the CUDA generator of `device` (None on a CPU)."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what rng_state saved; its CUDA generator goes to `device`, whichever index it has now."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def save(out: Path, payload: dict[str, Any]) -> None:
    """Write checkpoint.pt (atomically: a crash mid-write leaves the previous one) and the JSON files."""
    out.mkdir(parents=True, exist_ok=True)
    partial = out / (CHECKPOINT + ".partial")
    torch.save(payload, partial)
    os.replace(partial, out / CHECKPOINT)
    (out / "config.json").write_text(json.dumps(payload["config"], indent=2) + "\n")
    (out / "manifest.json").write_text(json.dumps(payload["manifest"], indent=2) + "\n")


def load(out: Path, parts: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The payload's `parts` that it holds (all of it when None), on the CPU: RNG states must be CPU
    tensors, and weights are copied where they go. Tensors are memory-mapped from the file, so the
    parts left out are never read."""
    path = Path(out) / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # weights_only stays off: the payload holds RNG states (tuples, numpy arrays) next to tensors.
    payload = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    if parts is None:
        return payload
    return {key: payload[key] for key in parts if key in payload}
