"""Trainer settings that cannot work, refused before anything slow happens: one rule table for both trainers."""

from __future__ import annotations

import dataclasses
import math

from avgen.errors import InputError

# key -> (lowest allowed, highest allowed, whether the highest is excluded, must be a whole number)
RULES: dict[str, tuple[float, float, bool, bool]] = {
    **{k: (1, math.inf, False, True) for k in ("steps", "batch_size", "grad_accum", "ckpt_every", "log_every", "keep",
                                                "crop_frames", "stats_batches")},
    **{k: (0, math.inf, False, True) for k in ("warmup", "val_every", "seed", "workers")},
    "weight_decay": (0.0, math.inf, False, False),
    "lr": (1e-12, math.inf, False, False),
    "grad_clip": (1e-12, math.inf, False, False),
    "crop_seconds": (1e-6, math.inf, False, False),
    "min_lr_ratio": (0.0, 1.0, False, False),
    "ema_decay": (0.0, 1.0, True, False),
}  # fmt: skip


def check_numbers(cfg, prefix: str = "trainer") -> None:
    """Raise InputError naming `prefix.key` for the first numeric setting of the dataclass `cfg` outside its range."""
    for field in dataclasses.fields(cfg):
        value, rule = getattr(cfg, field.name), RULES.get(field.name)
        if rule is None or value is None or isinstance(value, bool):
            continue
        low, high, open_high, whole = rule
        key = f"{prefix}.{field.name}={value}"
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{key} is not a finite number")
        if whole and value != int(value):
            raise InputError(f"{key} must be a whole number")
        if value < low or value > high or (open_high and value == high):
            upper = "" if high == math.inf else f" and {'<' if open_high else '<='} {high:g}"
            raise InputError(f"{key} is out of range: it must be >= {low:g}{upper}")


def check_config(cfg, world_size: int) -> None:
    """Both trainers' start-up check: the numbers, then a global batch that splits into world_size ranks x
    trainer.grad_accum (1 where the trainer has none) equal micro-batches."""
    check_numbers(cfg)
    accum = getattr(cfg, "grad_accum", 1)
    split = world_size * accum
    if cfg.batch_size % split:
        parts = f"{world_size} rank(s)" + (f" x trainer.grad_accum={accum}" if hasattr(cfg, "grad_accum") else "")
        raise InputError(f"trainer.batch_size={cfg.batch_size} does not split into {parts} equal micro-batches: use "
                         f"a multiple of {split}")  # fmt: skip
