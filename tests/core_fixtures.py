"""Small shared pieces for the joint-core tests: the tiny AEs' layout and a small DiT."""

from __future__ import annotations

from fractions import Fraction

import torch

from avgen.autoencoders.base import AEGeometry
from avgen.models.dit import AVDiT
from avgen.tokens import AVTokenLayout

VIDEO = AEGeometry(Fraction(16), 4, 8, 8)
AUDIO = AEGeometry(Fraction(16000), 400, 1, 16)


def tiny_layout(seconds: float = 2.0) -> AVTokenLayout:
    return AVTokenLayout.from_geometry(VIDEO, AUDIO, seconds, (64, 64), audio_patch=2)


def small_dit(layout: AVTokenLayout, width: int = 64, depth: int = 2, **kw) -> AVDiT:
    torch.manual_seed(0)
    return AVDiT(layout.pv, layout.pa, width=width, depth=depth, heads=2, text_dim=16, **kw)


def structured_latents(layout: AVTokenLayout, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth, avworld-like latent pair as tokens (1, lv, pv), (1, la, pa), unit variance."""
    g = torch.Generator().manual_seed(seed)
    zv = torch.randn(1, *layout.video_latent, generator=g)
    zv = torch.nn.functional.avg_pool3d(zv, 3, stride=1, padding=1)
    za = torch.nn.functional.avg_pool1d(torch.randn(1, *layout.audio_latent, generator=g), 5, stride=1, padding=2)
    xv, xa = layout.patchify(zv / zv.std(), za / za.std())
    return xv, xa
