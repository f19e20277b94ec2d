"""Media at the boundary: `AVClip`, and reading / writing clips with exact audio-video sync.

(read_clip / write_clip: being written; the AVClip contract below is fixed.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class AVClip:
    """A clip with synchronized sound.

    video: uint8 (T, H, W, 3); audio: float32 (C, N) in [-1, 1]; both start at time 0 on one clock.
    meta holds ground truth for datasets (never read by metrics).
    """

    video: torch.Tensor
    audio: torch.Tensor
    fps: float
    sample_rate: int
    caption: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.video.shape[0] / self.fps if self.video.shape[0] else self.audio.shape[-1] / self.sample_rate

    def save(self, path: str | Path) -> Path:
        return write_clip(self, path)
