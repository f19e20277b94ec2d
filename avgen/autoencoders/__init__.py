"""Autoencoders: media <-> latents, with declared geometry. `load(dir)` returns a saved one."""

from avgen.autoencoders.audio import SeanetAudioAE
from avgen.autoencoders.base import AEGeometry, Autoencoder
from avgen.autoencoders.encodec import EncodecAdapter
from avgen.autoencoders.io import load, weights_hash
from avgen.autoencoders.video import VideoVAE

__all__ = [
    "AEGeometry", "Autoencoder", "EncodecAdapter", "SeanetAudioAE", "VideoVAE", "load",
    "weights_hash",
]  # fmt: skip
