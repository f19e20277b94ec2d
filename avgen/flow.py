"""The flow convention, stated once, and the schedule shift that training and sampling share.

t in [0, 1], t = 1 is pure noise, x_t = (1 - t) x0 + t eps, the network predicts v = eps - x0, samplers integrate
from t = 1 to t = 0. Schedule shift: t' = s t / (1 + (s - 1) t); s > 1 pushes towards noise.
"""

from __future__ import annotations

import torch


def shift_time(t: torch.Tensor, shift: float) -> torch.Tensor:
    """t' = s t / (1 + (s - 1) t); the one schedule shift used by training (noise levels) and sampling (schedule)."""
    return shift * t / (1 + (shift - 1) * t)
