"""Saving and loading autoencoders by name: config.json + model.safetensors, never pickle.

The format lives in base.py (`Autoencoder.save`, `load_saved`, `weights_hash`); this module adds the one explicit
table of classes `load` may build (no import-by-string from a config file), and recognises a diffusers video VAE
directory (`save_pretrained`) by its `_class_name`, mapped through a fixed table too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from avgen.autoencoders.base import Autoencoder, load_saved, weights_hash
from avgen.autoencoders.diffusers_video import KINDS as DIFFUSERS_VIDEO
from avgen.autoencoders.diffusers_video import diffusers_video_class, frame_rate
from avgen.errors import InputError

__all__ = ["load", "weights_hash"]


def _classes() -> dict[str, type[Autoencoder]]:
    from avgen.autoencoders.audio import SeanetAudioAE
    from avgen.autoencoders.encodec import EncodecAdapter
    from avgen.autoencoders.video import VideoVAE

    return {"video_vae": VideoVAE, "seanet_audio": SeanetAudioAE, "encodec24k": EncodecAdapter, **DIFFUSERS_VIDEO}


def load(
    directory: str | Path, device: str | torch.device = "cpu", *, fps: int | float | str | None = None
) -> Autoencoder:
    """The autoencoder saved in `directory` (config.json + model.safetensors), in eval mode. Never unpickles.

    A diffusers video VAE directory (Wan, LTX-Video, CogVideoX, written by `save_pretrained`) loads at `fps`, by
    default its class's `default_fps` (Wan 16, LTX-Video 25, CogVideoX 8): a VAE stores no frame rate. A directory of
    ours records its rate; an `fps` that differs from it is refused.
    """
    video = diffusers_video_class(directory)  # None unless config.json names a diffusers video VAE
    if video is not None:
        return video.from_diffusers(directory, fps=fps).to(device).eval()
    ae = load_saved(directory, _classes(), device)
    if fps is not None and ae.geometry.input_rate != frame_rate(fps):
        raise InputError(f"{directory}: this autoencoder takes {ae.geometry.input_rate} steps/s, not fps={fps}")
    return ae
