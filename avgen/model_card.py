"""A model directory's card: README.md with YAML front matter, the form the Hugging Face Hub reads.

export_model writes it with every model directory (avgen-train's export/, tools/export_checkpoint.py,
AVGenPipeline.save_pretrained) from the objects it saves; `python -m avgen.model_card DIR` rewrites the card of an
existing directory and leaves its weights alone. The card is generated: hand-written notes about a model belong in
MODEL_CARD.md beside it, which the card links to when there is one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

from avgen.autoencoders import Autoencoder, weights_hash
from avgen.tokens import ClipFormat

CARD_NAME = "README.md"
NOTES_NAME = "MODEL_CARD.md"
LICENSE = "apache-2.0"  # the repo's LICENSE (pyproject: Apache-2.0), spelled as the Hub's license list spells it
PIPELINE_TAG = "text-to-video"  # the Hub has no text-to-audio-video task; t2av's closest, the other tasks in tags
TAGS = ["avgen", "text-to-audio-video", "text-to-audio", "audio-to-video", "video-to-audio", "diffusion-transformer",
        "rectified-flow"]  # fmt: skip


def card_metadata(dit, config: dict, video_ae: Autoencoder, audio_ae: Autoencoder, dit_sha256: str) -> dict:
    """The front matter: the Hub's keys, then avgen's own (clip format, the AEs' kinds, geometry and hashes, the
    DiT, the sampler defaults and the training note, as dit/config.json records them)."""
    fmt = ClipFormat.derive(video_ae, audio_ae, config["clip"], config["tokens"])
    clip = {"duration_s": fmt.duration, "size": list(fmt.size), "fps": str(fmt.fps),
            "sample_rate": str(fmt.sample_rate), "audio_channels": fmt.channels}  # fmt: skip
    aes = {name: {"kind": ae.kind, "sha256": weights_hash(ae), "geometry": ae.geometry.to_dict()}
           for name, ae in (("video_ae", video_ae), ("audio_ae", audio_ae))}  # fmt: skip
    net = {"parameters": sum(p.numel() for p in dit.parameters()), "sha256": dit_sha256,
           **{k: dit.config[k] for k in ("width", "depth", "heads") if k in dit.config}}  # fmt: skip
    avgen = {"clip": clip, "tokens": fmt.to_config()["tokens"], **aes, "dit": net}
    avgen |= {k: config[k] for k in ("sampler", "training", "checkpoint") if k in config}
    meta = {"library_name": "avgen", "pipeline_tag": PIPELINE_TAG, "license": LICENSE, "tags": TAGS, "avgen": avgen}
    return json.loads(json.dumps(meta, default=str))  # plain YAML types: tuples as lists, Fractions as strings


def model_card(directory: str | Path, dit, config: dict, video_ae: Autoencoder, audio_ae: Autoencoder) -> str:
    """README.md's text for the model directory `directory` (its dit/model.safetensors written already)."""
    from avgen.model_dir import file_hash

    d = Path(directory)
    meta = card_metadata(dit, config, video_ae, audio_ae, file_hash(d / "dit" / "model.safetensors"))
    a = meta["avgen"]
    c, text, s = a["clip"], config.get("text_encoder") or {}, a.get("sampler", {})
    training = json.dumps(a["training"]) if "training" in a else "not recorded in dit/config.json"
    encoder = Path(text["path"]).name if text.get("path") else "the default of avgen.models.text"
    rows = [f"| `dit/` | joint audio-video DiT, {a['dit']['parameters'] / 1e6:.2f} M parameters | "
            f"`{a['dit']['sha256'][:16]}` |"]  # fmt: skip
    for name in ("video_ae", "audio_ae"):
        ae = video_ae if name == "video_ae" else audio_ae
        rows.append(f"| `{name}/` | {ae.kind}: {ae.geometry} | `{a[name]['sha256'][:16]}` |")
    rows.append(f"| text encoder | {encoder}, frozen | not stored here |")
    lines = [
        "---", yaml.safe_dump(meta, sort_keys=False, default_flow_style=None, width=120).strip(), "---", "",
        f"# avgen model `{d.name}`", "",
        f"Clips of {c['duration_s']:g} s with synchronized sound: {c['size'][0]}×{c['size'][1]} at {c['fps']} fps, "
        f"{c['audio_channels']}-channel audio at {c['sample_rate']} Hz. Tasks: t2av, t2v, t2a, a2v, v2a, extend.", "",
        "| part | what | sha256 |", "|---|---|---|", *rows, "",
        f"Default sampler: `{json.dumps(s)}`. Training: `{training}`.", "",
        "```python", "import torch", "from avgen import AVGenPipeline", "",
        f'pipe = AVGenPipeline.from_pretrained("{d.name}")  # this directory',
        "clip = pipe(", '    "a prompt",', f'    num_inference_steps={s.get("steps", 16)},',
        f'    guidance_scale={s.get("cfg_video", 3.0)},', f'    audio_guidance_scale={s.get("cfg_audio", 3.0)},',
        "    generator=torch.Generator().manual_seed(0),", ")  # or seed=0; avgen's names work too",
        'clip.save("clip.mp4")', "```", "",
    ]  # fmt: skip
    if (d / NOTES_NAME).is_file():
        lines += [f"Data, training, evaluation and limits: [{NOTES_NAME}]({NOTES_NAME}).", ""]
    return "\n".join(lines)


def write_model_card(directory: str | Path, dit, config: dict, video_ae: Autoencoder, audio_ae: Autoencoder) -> Path:
    """Write (atomically) README.md into the model directory; returns its path."""
    from avgen._atomic import atomic_path

    path = Path(directory) / CARD_NAME
    with atomic_path(path) as tmp:
        tmp.write_text(model_card(directory, dit, config, video_ae, audio_ae))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Rewrite README.md (the model card) of an avgen model directory.")
    ap.add_argument("model", help="a model directory (dit/, video_ae/, audio_ae/), e.g. assets/default")
    args = ap.parse_args(argv)
    from avgen.pipeline import AVGenPipeline

    pipe = AVGenPipeline.from_pretrained(args.model)
    config = {k: v for k, v in pipe.config.items() if k != "dit"}
    print(write_model_card(args.model, pipe.dit, config, pipe.video_ae, pipe.audio_ae))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
