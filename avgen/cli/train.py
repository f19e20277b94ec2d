"""avgen-train: train the joint DiT on cached latents with Hydra configs (conf/train.yaml). Rerun to resume."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from avgen.autoencoders import load
from avgen.cli.common import CONFIG_DIR, friendly_errors
from avgen.data.latents import LatentShards
from avgen.models.dit import build_dit
from avgen.pipeline import AVGenPipeline, export_model
from avgen.tokens import AVTokenLayout
from avgen.train.loop import LatentBatcher, TrainConfig, train_dit
from avgen.train.validate import Validator


def run(cfg: DictConfig) -> dict:
    OmegaConf.resolve(cfg)
    video_ae, audio_ae = load(cfg.video_ae.path), load(cfg.audio_ae.path)
    layout = AVTokenLayout.from_autoencoders(
        video_ae,
        audio_ae,
        cfg.clip.duration,
        tuple(cfg.clip.size),
        video_patch=tuple(cfg.tokens.video_patch),
        audio_patch=cfg.tokens.audio_patch,
        ref_rate=cfg.tokens.ref_rate,
    )
    shards = LatentShards(cfg.latents, video_ae=video_ae, audio_ae=audio_ae)
    if tuple(shards.video.shape[1:]) != layout.video_latent or tuple(shards.audio.shape[1:]) != layout.audio_latent:
        raise ValueError(
            f"latents in {cfg.latents} have shapes {tuple(shards.video.shape[1:])} / {tuple(shards.audio.shape[1:])} "
            f"but clip.duration={cfg.clip.duration} and clip.size={list(cfg.clip.size)} need {layout.video_latent} / "
            f"{layout.audio_latent}: cache latents with the same duration and size"
        )
    trainer = TrainConfig(**OmegaConf.to_container(cfg.trainer))
    text = instantiate(cfg.text_encoder)
    model_cfg = OmegaConf.to_container(cfg.model)
    model = build_dit(model_cfg.pop("preset"), layout.pv, layout.pa, **model_cfg)
    objective = instantiate(cfg.objective)
    print(
        f"{layout.describe()}; DiT {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
        f"{len(shards)} cached clips -> {cfg.out_dir}"
    )
    batcher = LatentBatcher(shards, layout, video_ae, audio_ae, text, trainer.device)
    validator = None
    if trainer.val_every:
        config = export_config(cfg, trainer)
        validator = Validator(lambda m: AVGenPipeline(m, video_ae, audio_ae, text, config), cfg.out_dir)
    last = train_dit(model, objective, batcher, len(shards), trainer, cfg.out_dir, validate=validator)
    export_model(last.pop("ema").model, Path(cfg.out_dir) / "export", export_config(cfg, trainer), video_ae, audio_ae)
    print(
        f"done: loss {last.get('loss', float('nan')):.4f}; EMA model exported to {cfg.out_dir}/export "
        f"(AVGenPipeline.from_pretrained / avgen-generate model=...)"
    )
    return last


def export_config(cfg: DictConfig, trainer: TrainConfig) -> dict:
    """What a model directory needs besides the network: the clip format, tokens, text encoder, sampler defaults."""
    text = {k: v for k, v in OmegaConf.to_container(cfg.text_encoder).items() if k in ("path", "max_tokens")}
    return {
        "clip": OmegaConf.to_container(cfg.clip),
        "tokens": OmegaConf.to_container(cfg.tokens),
        "text_encoder": text,
        "sampler": OmegaConf.to_container(cfg.sampler),
        "training": {"steps": trainer.steps, "batch_size": trainer.batch_size, "latents": str(cfg.latents)},
    }


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
