"""avgen-train: train the joint DiT with Hydra configs (avgen/conf/train.yaml). Rerun the same command to resume.

avgen-train latents=runs/latents out_dir=runs/dit                 # on cached latents (tools/cache_latents.py)
avgen-train data=avworld out_dir=runs/dit                         # clips encoded on the fly
torchrun --standalone --nproc_per_node 2 -m avgen.cli.train latents=...         # DDP (gloo on CPU, NCCL on CUDA)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from avgen.cli.common import CONFIG_DIR, check_resume, friendly_errors, load_autoencoder, record_run_config, run_dir
from avgen.data import AVWorld
from avgen.data.avworld.vocab import FAMILIES
from avgen.data.latents import LatentShards
from avgen.errors import InputError, MissingFileError
from avgen.evaluation import probes_from_clips
from avgen.model_dir import export_model, model_config
from avgen.models.dit import build_dit
from avgen.pipeline import AVGenPipeline
from avgen.tokens import ClipFormat
from avgen.train.batches import ClipBatcher, LatentBatcher
from avgen.train.checkpoint import seed_all
from avgen.train.distributed import setup, teardown
from avgen.train.loop import TrainConfig, check_config, train_dit
from avgen.train.validate import Validator


def _batcher(cfg: DictConfig, fmt: ClipFormat, layout, video_ae, audio_ae, text, device):
    if cfg.latents is None:  # clips rendered or read at the autoencoders' rates and audio channels
        data = instantiate(cfg.data, fps=float(fmt.fps), sample_rate=int(fmt.sample_rate), channels=fmt.channels)
        batcher = ClipBatcher(data, layout, video_ae, audio_ae, text, device, cfg.get("script_prob", 0.0))
        return batcher, f"{type(data).__name__} on the fly"
    shards = LatentShards(cfg.latents, video_ae=video_ae, audio_ae=audio_ae)
    if tuple(shards.video.shape[1:]) != layout.video_latent or tuple(shards.audio.shape[1:]) != layout.audio_latent:
        raise InputError(
            f"latents in {cfg.latents} have shapes {tuple(shards.video.shape[1:])} / {tuple(shards.audio.shape[1:])} "
            f"but clip.duration={cfg.clip.duration} and clip.size={list(cfg.clip.size)} need {layout.video_latent} / "
            f"{layout.audio_latent}: cache latents with the same duration, size and tokens.audio_patch "
            f"(tools/cache_latents.py --duration --size --audio-patch)"
        )
    batcher = LatentBatcher(shards, layout, video_ae, audio_ae, text, device, cfg.get("script_prob", 0.0))
    return batcher, f"{len(shards)} cached clips"


def _init_from(model, directory: str) -> None:
    """Start from a trained model directory's DiT weights (fine-tuning); shapes must match the model config. Parts
    the directory lacks that start as the identity (the sync path, zero-initialised) keep their initial weights."""
    from safetensors.torch import load_file

    weights = Path(directory) / "dit" / "model.safetensors"
    if not weights.is_file():
        raise MissingFileError(f"init_from={directory} has no dit/model.safetensors (use an avgen-train export dir)")
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise InputError(f"init_from={directory} does not fit model={dict(model.config)}: {str(e)[:300]}") from e
    foreign = [k for k in missing if ".sync." not in k] + list(unexpected)
    if foreign:
        raise InputError(f"init_from={directory} does not fit model={dict(model.config)}: missing or unexpected "
                         f"weights {foreign[:4]}")  # fmt: skip
    if missing:
        print(f"init_from={directory}: {len(missing)} new tensors of the sync path start zero-initialised")


def _probes(val: DictConfig, fmt: ClipFormat, layout, video_ae, audio_ae, text):
    """The dependence probe's fixed clips: validation.probe_clips held-out avworld clips per family (0: none)."""
    if not val.probe_clips:
        return None
    clips = []
    for family in FAMILIES:
        world = AVWorld(val.probe_seed, duration=fmt.duration, fps=float(fmt.fps), size=fmt.size,
                        sample_rate=int(fmt.sample_rate), families=[family], channels=fmt.channels)  # fmt: skip
        clips += [world[i] for i in range(val.probe_clips)]
    with torch.no_grad():
        return probes_from_clips(clips, video_ae, audio_ae, text, layout)


def _export_options(cfg: DictConfig, out: Path, video_ae, audio_ae) -> dict:
    """export.reference / export.root, checked now (not after training): each referenced AE was loaded from a
    directory that the export can name relative to its folder or to the root."""
    from avgen.autoencoders.reference import check_parts, reference_path

    export = cfg.get("export") or {}
    parts, root = check_parts(list(export.get("reference") or [])), export.get("root")
    for part, ae in (("video", video_ae), ("audio", audio_ae)):
        if part in parts:
            reference_path(ae, out / "export" / f"{part}_ae", root)
    return {"reference": sorted(parts), "root": root}


@dataclass
class Prepared:
    """Everything a training run is built from, after every start-up check has passed."""

    trainer: TrainConfig
    info: object  # avgen.train.distributed.DistInfo
    out: Path
    model: torch.nn.Module
    objective: object
    batcher: LatentBatcher
    validator: Validator | None
    optimizer: object
    export_config: dict
    video_ae: object
    audio_ae: object
    export_options: dict = field(default_factory=dict)  # export_model's reference / root (config key export)


def prepare(cfg: DictConfig) -> Prepared:
    """Build a run from a composed config (the process group too, under torchrun); tools/benchmarks/trainers.py
    times the trainer through this, as users run it."""
    OmegaConf.resolve(cfg)
    trainer = TrainConfig(**OmegaConf.to_container(cfg.trainer))
    info = setup(trainer.device)
    check_config(trainer, info.world_size)  # before anything slow
    out = run_dir(cfg)
    check_resume(cfg, out)
    video_ae = load_autoencoder(cfg.video_ae, "video_ae", info.device)
    audio_ae = load_autoencoder(cfg.audio_ae, "audio_ae", info.device)
    fmt = ClipFormat.derive(video_ae, audio_ae, cfg.clip, cfg.tokens)
    layout = fmt.layout(video_ae, audio_ae)
    text = instantiate(cfg.text_encoder)
    batcher, source = _batcher(cfg, fmt, layout, video_ae, audio_ae, text, info.device)
    model_cfg = OmegaConf.to_container(cfg.model)
    seed_all(trainer.seed)  # the same initial weights on every rank and every rerun
    model = build_dit(model_cfg.pop("preset"), layout.pv, layout.pa, layout.per_window, text_dim=text.dim, **model_cfg)
    if cfg.get("init_from"):
        _init_from(model, cfg.init_from)
    config = model_config(OmegaConf.to_container(cfg), fmt)  # cfg is resolved above
    if info.is_main:
        print(f"{layout.describe()}; DiT {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
              f"{source}; {info.world_size} rank(s) -> {out}")  # fmt: skip
        record_run_config(cfg, out)
    validator = None
    if trainer.val_every:
        probes = _probes(cfg.validation, fmt, layout, video_ae, audio_ae, text) if info.is_main else None
        validator = Validator(lambda m: AVGenPipeline(m, video_ae, audio_ae, text, config), out, probes=probes,
                              layout=layout)  # fmt: skip
    return Prepared(trainer, info, out, model, instantiate(cfg.objective), batcher, validator,
                    instantiate(cfg.optim), config, video_ae, audio_ae,
                    _export_options(cfg, out, video_ae, audio_ae))  # fmt: skip


def run(cfg: DictConfig) -> dict:
    r = prepare(cfg)
    last = train_dit(r.model, r.objective, r.batcher, len(r.batcher), r.trainer, r.out, validate=r.validator,
                     info=r.info, optimizer=r.optimizer)  # fmt: skip
    if r.info.is_main:
        export_model(last.pop("ema").model, r.out / "export", r.export_config, r.video_ae, r.audio_ae,
                     **r.export_options)  # fmt: skip
        said = f"loss {last['loss']:.4f}" if "loss" in last else f"already at trainer.steps={r.trainer.steps}"
        if last.get("data/skipped_files"):
            said += f"; {int(last['data/skipped_files'])} unreadable files skipped (warned about above)"
        print(f"done: {said}; EMA model exported to {r.out}/export "
              f"(AVGenPipeline.from_pretrained / avgen-generate model=...)")  # fmt: skip
    teardown()
    return last


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
