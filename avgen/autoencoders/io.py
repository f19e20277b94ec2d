"""Saving and loading autoencoders by name: config.json + model.safetensors, never pickle.

The format lives in base.py (`Autoencoder.save`, `load_saved`, `weights_hash`); this module adds the one explicit
table of classes `load` may build (no import-by-string from a config file).
"""

from __future__ import annotations

from pathlib import Path

import torch

from avgen.autoencoders.base import Autoencoder, load_saved, weights_hash

__all__ = ["load", "weights_hash"]


def _classes() -> dict[str, type[Autoencoder]]:
    from avgen.autoencoders.audio import SeanetAudioAE
    from avgen.autoencoders.encodec import EncodecAdapter
    from avgen.autoencoders.video import VideoVAE

    return {"video_vae": VideoVAE, "seanet_audio": SeanetAudioAE, "encodec24k": EncodecAdapter}


def load(directory: str | Path, device: str | torch.device = "cpu") -> Autoencoder:
    """The autoencoder saved in `directory` (config.json + model.safetensors), in eval mode. Never unpickles."""
    return load_saved(directory, _classes(), device)
