"""Autoencoders: media <-> latents, with declared geometry. `load(dir)` returns a saved one (ours, a reference, or a
transformers / diffusers directory)."""

from avgen.autoencoders.audio import SeanetAudioAE
from avgen.autoencoders.base import AEGeometry, Autoencoder
from avgen.autoencoders.encodec import EncodecAdapter
from avgen.autoencoders.hf_audio import DiffusersOobleck, HFDac, HFEncodec
from avgen.autoencoders.io import known_kinds, load, weights_hash
from avgen.autoencoders.video import VideoVAE

__all__ = [
    "AEGeometry", "Autoencoder", "DiffusersOobleck", "EncodecAdapter", "HFDac", "HFEncodec", "SeanetAudioAE",
    "VideoVAE", "known_kinds", "load", "weights_hash",
]  # fmt: skip
