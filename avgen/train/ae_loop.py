"""Training loop for one autoencoder: deterministic batches, AdamW with warmup + cosine, exact resume, latent stats.

Batches are a pure function of (seed, step), so a resumed run sees exactly the data an uninterrupted one would.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avgen.autoencoders.base import Autoencoder
from avgen.data.batch import video_to_model
from avgen.errors import DivergedError
from avgen.train.checkpoint import (
    capture_rng_state,
    clean_run_dir,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from avgen.train.checks import check_numbers
from avgen.train.distributed import autocast_for
from avgen.train.logging import MetricsLogger
from avgen.train.schedule import lr_factor

log = logging.getLogger(__name__)


@dataclass
class AETrainConfig:
    steps: int = 20000
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    crop_frames: int = 8  # video: random crops of this many frames (the AE is local in time)
    crop_seconds: float | None = None  # audio: crop length (None: whole clips)
    ckpt_every: int = 500
    keep: int = 3
    log_every: int = 20
    stats_batches: int = 16
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


def make_batch(data, modality: str, step: int, cfg: AETrainConfig, geometry) -> torch.Tensor:
    """Batch `step`: clips step*B .. step*B+B-1 of `data`, cropped at offsets drawn from (seed, step)."""
    rng = np.random.default_rng([cfg.seed, step, 0xAE])
    items = []
    for i in range(cfg.batch_size):
        index = (step * cfg.batch_size + i) % len(data)
        if hasattr(data, "set_epoch"):
            data.set_epoch((step * cfg.batch_size + i) // len(data))
        clip = data[index]
        if modality == "video":
            x = video_to_model(clip.video)  # (3, T, H, W)
            t = x.shape[1] if cfg.crop_frames is None else cfg.crop_frames
            geometry.check_length(t)
            s = int(rng.integers(x.shape[1] - t + 1))
            items.append(x[:, s : s + t])
        else:
            x = clip.audio
            n = x.shape[1] if cfg.crop_seconds is None else geometry.duration_length(cfg.crop_seconds)
            geometry.check_length(n)
            s = int(rng.integers(x.shape[1] - n + 1))
            items.append(x[:, s : s + n])
    return torch.stack(items)


def train_autoencoder(ae: Autoencoder, loss_fn, data, cfg: AETrainConfig, out_dir: str | Path) -> dict:
    """Train (or resume) `ae` on `data` and export it with measured latent stats to out_dir/export."""
    check_numbers(cfg)
    out = Path(out_dir)
    device = torch.device(cfg.device)
    ae.to(device).train()
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    step = 0
    clean_run_dir(out)
    found = latest_checkpoint(out / "checkpoints")
    if found is not None:
        state = load_checkpoint(found, map_location=device)
        ae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        step = int(state["step"])
        log.info("resumed from %s at step %d", found, step)
    logger = MetricsLogger(out)
    desc = f"train {ae.kind}"
    with tqdm(total=cfg.steps, initial=step, disable=not cfg.progress, desc=desc, dynamic_ncols=True) as bar:
        last = {}
        while step < cfg.steps:
            x = make_batch(data, ae.modality, step, cfg, ae.geometry).to(device)
            with autocast_for(device):
                terms = loss_fn(ae, x)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                where = out / "checkpoints"
                raise DivergedError(
                    f"non-finite loss at step {step} ({loss.item()}); last good checkpoint kept in {where}"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(ae.parameters(), cfg.grad_clip, error_if_nonfinite=False)
            if not torch.isfinite(grad_norm):
                raise DivergedError(f"non-finite gradient at step {step}; the last good checkpoint is kept")
            opt.step()
            sched.step()
            step += 1
            last = {k: float(v.detach()) for k, v in terms.items()} | {
                "grad_norm": float(grad_norm),
                "lr": sched.get_last_lr()[0],
            }
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            if step % cfg.log_every == 0 or step == cfg.steps:
                logger.log(step, last)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                save_checkpoint(out / "checkpoints", step, {
                    "model": ae.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "step": step, "rng": capture_rng_state(), "config": asdict(cfg),
                }, keep=cfg.keep)  # fmt: skip
    export_with_stats(ae, data, cfg, out / "export")
    logger.close()
    return last


@torch.no_grad()
def export_with_stats(ae: Autoencoder, data, cfg: AETrainConfig, directory: Path) -> None:
    """Measure per-channel latent stats on whole clips (a fixed data range) and save the AE."""
    ae.eval()
    device = next(ae.parameters()).device
    full = AETrainConfig(**{**asdict(cfg), "crop_frames": None, "crop_seconds": None, "seed": cfg.seed + 1})
    batches = (make_batch(data, ae.modality, 10_000_000 + k, full, ae.geometry).to(device)
               for k in range(cfg.stats_batches))  # fmt: skip
    mean, std = ae.measure_latent_stats(batches)
    ae.set_latent_stats(mean, std)
    ae.cpu().save(directory)
    ae.to(device)
