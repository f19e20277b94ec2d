"""The learning-rate schedule every trainer uses: linear warmup, then cosine down to a floor."""

from __future__ import annotations

import math


def lr_factor(step: int, cfg) -> float:
    """Multiplier of the base lr at `step`; cfg has warmup, steps and min_lr_ratio."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
