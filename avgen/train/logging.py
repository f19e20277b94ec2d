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


def rank_line(out: str | Path, info, line: str) -> None:
    """Under torchrun, append one line to this rank's own log, out/ranks/rank{r}.log (info: a DistInfo); no-op in
    one process. Every rank writes its own file, so lines never interleave."""
    if not info.distributed:
        return
    d = Path(out) / "ranks"
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"rank{info.rank}.log", "a") as f:
        f.write(line + "\n")


def rank_log(out: str | Path, info, step: int, values: dict[str, float]) -> None:
    """Each rank's own local losses, one line a log step: `step S name=value ...` (see rank_line)."""
    rank_line(out, info, f"step {step} " + " ".join(f"{k}={v:.6f}" for k, v in values.items()))
