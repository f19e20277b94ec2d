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


TINY_MODEL_CONFIG = {
    "clip": {"duration": 2.0, "size": [64, 64]},
    "tokens": {"video_patch": [1, 2, 2], "audio_patch": 2, "ref_rate": 100.0},
    "text_encoder": {"path": None, "max_tokens": 16},
    "sampler": {"method": "euler", "steps": 3, "shift": 1.0, "cfg_video": 2.0, "cfg_audio": 2.0},
}


def tiny_model_dir(directory, perturb: bool = True, half: bool = True, **sampler):
    """A random-weight model directory (tiny AEs, a 1-block DiT) that AVGenPipeline loads in a second. perturb: move
    the weights off adaLN-Zero's zero-velocity start; sampler: overrides of the default sampler settings."""
    from avgen.autoencoders import SeanetAudioAE, VideoVAE
    from avgen.model_dir import export_model

    torch.manual_seed(0)
    video = VideoVAE(latent_channels=4, width=8, mults=[1, 1, 1], blocks=1, latent_blocks=1)
    audio = SeanetAudioAE(latent_channels=4, n_filters=4)
    layout = AVTokenLayout.from_autoencoders(video, audio, 2.0, (64, 64), audio_patch=2)
    dit = AVDiT(layout.pv, layout.pa, width=32, depth=1, heads=2, text_dim=384)
    for p in dit.parameters() if perturb else ():  # adaLN-Zero starts at zero velocity; give it something to say
        torch.nn.init.normal_(p, std=0.05)
    config = {**TINY_MODEL_CONFIG, "sampler": {**TINY_MODEL_CONFIG["sampler"], **sampler}}
    return export_model(dit, directory, config, video, audio, half=half)
