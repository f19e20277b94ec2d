"""Metrics to JSONL and TensorBoard, one writer for every trainer."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path


class MetricsLogger:
    """Appends {"step": s, "time": t, **metrics} lines to metrics.jsonl and mirrors scalars to TensorBoard."""

    def __init__(self, directory: str | Path, tensorboard: bool = True, enabled: bool = True) -> None:
        self.dir = Path(directory)
        self.enabled = enabled
        self.tb = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "metrics.jsonl"
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.dir / "tb"))
            except ImportError:  # tensorboard is a dependency, but logging must never stop training
                self.tb = None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        clean = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(float(v))}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time(), 3), **clean}) + "\n")
        if self.tb is not None:
            for k, v in clean.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
