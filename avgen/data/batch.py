"""Collating clips into model batches: video (b, 3, t, h, w) and audio (b, c, n) in [-1, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from avgen.errors import InputError
from avgen.media import AVClip


def video_to_model(video: torch.Tensor) -> torch.Tensor:
    """uint8 (T, H, W, 3) or (B, T, H, W, 3) -> float (.., 3, T, H, W) in [-1, 1]."""
    x = video.float().div(127.5).sub(1.0)
    return x.movedim(-1, -4)


def video_from_model(x: torch.Tensor) -> torch.Tensor:
    """float (.., 3, T, H, W) in [-1, 1] -> uint8 (.., T, H, W, 3)."""
    return x.movedim(-4, -1).clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def collate_clips(clips: Sequence[AVClip]) -> dict:
    """Stack equal-length clips: {"video": (b, 3, t, h, w), "audio": (b, c, n), "captions": [str], "meta": [dict]}."""
    shapes = {(tuple(c.video.shape), tuple(c.audio.shape)) for c in clips}
    if len(shapes) != 1:
        raise InputError(f"clips in a batch must share shapes, got {sorted(shapes)}")
    return {
        "video": video_to_model(torch.stack([c.video for c in clips])),
        "audio": torch.stack([c.audio for c in clips]).float(),
        "captions": [c.caption or "" for c in clips],
        "meta": [c.meta for c in clips],
    }
