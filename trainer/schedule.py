"""Learning rate by step: linear warmup, then cosine decay or warmup-stable-decay (WSD).

A pure function of the step, so a resumed run needs only the step to be back on its schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Schedule:
    kind: str  # "cosine" or "wsd"
    max_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int
    decay_fraction: float = 0.2  # wsd: the last fraction of the steps decays linearly to min_lr

    def __call__(self, step: int) -> float:
        """The rate of optimizer step `step` (0-based): warmup reaches max_lr at step warmup_steps - 1;
        the decay ends at min_lr on the last step, total_steps - 1."""
        if step < self.warmup_steps:
            return self.max_lr * (step + 1) / self.warmup_steps
        if self.kind == "cosine":
            span = max(self.total_steps - 1 - self.warmup_steps, 1)
            progress = min((step - self.warmup_steps) / span, 1.0)
            return self.min_lr + 0.5 * (self.max_lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        decay_steps = max(round(self.total_steps * self.decay_fraction), 1)
        decay_start = self.total_steps - decay_steps
        if step < decay_start:
            return self.max_lr
        progress = min((step - decay_start + 1) / decay_steps, 1.0)
        return self.max_lr + (self.min_lr - self.max_lr) * progress
