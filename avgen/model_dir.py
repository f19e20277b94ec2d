"""Writing a model directory (what AVGenPipeline.from_pretrained loads): the DiT's weights and config beside the two
autoencoders and a model card; the config from a training run; the weights hash the cards and references quote."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from pathlib import Path

import torch

from avgen.autoencoders import Autoencoder
from avgen.models.dit import AVDiT
from avgen.paths import portable_path
from avgen.tokens import ClipFormat


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_config(run: dict, clip_format: ClipFormat) -> dict:
    """What a model directory needs besides the network, from a training run's resolved config (a plain dict):
    the clip format's free choices, the text encoder, the sampler defaults and a note of the training."""
    text = {k: v for k, v in run["text_encoder"].items() if k in ("path", "max_tokens")}
    trainer = run["trainer"]
    training = {
        "steps": trainer["steps"],
        "batch_size": trainer["batch_size"],
        "latents": portable_path(run["latents"]),
    }
    return {**clip_format.to_config(), "text_encoder": text, "sampler": dict(run["sampler"]), "training": training}


def export_model(
    dit: AVDiT,
    directory: str | Path,
    config: dict,
    video_ae: Autoencoder,
    audio_ae: Autoencoder,
    half: bool = False,
    reference: Collection[str] = (),
    root: str | None = None,
) -> Path:
    """Write a model directory that AVGenPipeline.from_pretrained loads: dit/ (safetensors + config.json with the
    network, clip format, tokens, text encoder and sampler defaults) beside video_ae/ and audio_ae/, and README.md.
    The AEs are copied, except the parts named in `reference` ("video", "audio"): those get a reference.json to the
    directory the AE was loaded from, relative to the part's folder or to the environment variable `root`."""
    from safetensors.torch import save_file

    from avgen._atomic import atomic_path
    from avgen.autoencoders.reference import check_parts, export_autoencoder
    from avgen.model_card import write_model_card

    parts = check_parts(reference)  # before anything is written: a bad part name leaves no half-made directory
    d = Path(directory)
    (d / "dit").mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if half else torch.float32
    state = {k: v.detach().to(dtype).contiguous().cpu() for k, v in dit.state_dict().items()}
    with atomic_path(d / "dit" / "model.safetensors") as tmp:
        save_file(state, str(tmp))
    with atomic_path(d / "dit" / "config.json") as tmp:
        tmp.write_text(json.dumps({"dit": dit.config, **config}, indent=2) + "\n")
    for part, ae in (("video", video_ae), ("audio", audio_ae)):  # each file replaced atomically
        export_autoencoder(ae, d / f"{part}_ae", reference=part in parts, root=root)
    write_model_card(d, dit, config, video_ae, audio_ae)  # README.md: the Hugging Face model card
    return d
