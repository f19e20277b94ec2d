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
from avgen.tokens import AVTokenLayout
from avgen.train.loop import LatentBatcher, TrainConfig, export_dit, train_dit


def run(cfg: DictConfig) -> dict:
    OmegaConf.resolve(cfg)
    video_ae, audio_ae = load(cfg.video_ae.path), load(cfg.audio_ae.path)
    layout = AVTokenLayout.from_autoencoders(
        video_ae, audio_ae, cfg.clip.duration, tuple(cfg.clip.size), video_patch=tuple(cfg.tokens.video_patch),
        audio_patch=cfg.tokens.audio_patch, ref_rate=cfg.tokens.ref_rate,
    )  # fmt: skip
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
    print(f"{layout.describe()}; DiT {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
          f"{len(shards)} cached clips -> {cfg.out_dir}")  # fmt: skip
    batcher = LatentBatcher(shards, layout, video_ae, audio_ae, text, trainer.device)
    last = train_dit(model, objective, batcher, len(shards), trainer, cfg.out_dir)
    extra = {"clip": OmegaConf.to_container(cfg.clip), "tokens": OmegaConf.to_container(cfg.tokens),
             "video_ae": str(Path(cfg.video_ae.path)), "audio_ae": str(Path(cfg.audio_ae.path)),
             "text_encoder": OmegaConf.to_container(cfg.text_encoder), "steps": trainer.steps}  # fmt: skip
    export_dit(last.pop("ema").model, Path(cfg.out_dir) / "export", extra)
    print(f"done: loss {last.get('loss', float('nan')):.4f}; EMA weights exported to {cfg.out_dir}/export")
    return last


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
