"""Rotary position embedding over (time, y, x), with periods chosen from the clip's own time scale.

Time is in ticks (seconds x the layout's ref_rate), the same axis for audio and video. Half of each head's rotary
pairs go to time, a quarter each to y and x. Time periods run geometrically from twice the finest token spacing
(the fastest pair turns by pi between neighbouring tokens: resolved) to four times the longest clip (the slowest
pair turns less than half a circle over the clip: no wrap). Plain base-10000 frequencies over positions in seconds
would barely rotate in a 2 s clip.
"""

from __future__ import annotations

import math

import torch

from avgen.tokens import rope_periods


def rope_angles(
    positions: torch.Tensor,
    head_dim: int,
    finest_spacing: float,
    max_span: float,
    max_grid: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """positions (l, 3) -> cos, sin of shape (l, head_dim / 2)."""
    pairs = head_dim // 2
    n_t = pairs // 2
    n_y = (pairs - n_t) // 2
    n_x = pairs - n_t - n_y
    periods = [
        rope_periods(n_t, 2.0 * finest_spacing, 4.0 * max_span),
        rope_periods(n_y, 2.0, 4.0 * max_grid),
        rope_periods(n_x, 2.0, 4.0 * max_grid),
    ]
    parts = [positions[:, i : i + 1].double() * (2 * math.pi / p.double())[None] for i, p in enumerate(periods)]
    angles = torch.cat(parts, dim=1)  # (l, pairs)
    return angles.cos().float(), angles.sin().float()
