"""Training loop for one autoencoder: deterministic batches, AdamW with warmup + cosine, exact resume, latent stats.

Batches are a pure function of (seed, step), so a resumed run sees exactly the data an uninterrupted one would.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from avgen.autoencoders.base import Autoencoder
from avgen.data.batch import video_to_model
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
from avgen.train.skeleton import (
    OptimizerFactory,
    build_optimizer,
    clip_gradients,
    compile_in_place,
    due,
    step_loop,
    stop_if_not_finite,
)
from avgen.train.stream import step_stream

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
    val_every: int = 0  # N > 0: every N steps, the round-trip report on fixed held-out clips (see validate=)
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    compile: bool = False  # torch.compile the AE's forward, which the losses call (same maths)
    workers: int = 0  # data-loader processes rendering the next batches while the model trains (0: in this one)


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


def train_autoencoder(ae: Autoencoder, loss_fn, data, cfg: AETrainConfig, out_dir: str | Path,
                      optimizer: OptimizerFactory | None = None, validate=None) -> dict:  # fmt: skip
    """Train (or resume) `ae` on `data` and export it with measured latent stats to out_dir/export.
    optimizer: params -> optimizer (the optim config group), AdamW from cfg when None; validate(ae, step) -> metrics
    every cfg.val_every steps (in eval mode, outside the training RNG: see AERoundTrip)."""
    check_numbers(cfg)
    out = Path(out_dir)
    device = torch.device(cfg.device)
    ae.to(device).train()
    compile_in_place(ae, cfg.compile)  # validation and the latent stats call encode / decode: eager
    opt, sched = build_optimizer(ae.parameters(), cfg, optimizer)
    clean_run_dir(out)
    start = _resume(out, device, ae, opt, sched)
    logger = MetricsLogger(out)

    def one_step(step: int) -> dict:
        x = next_batch(step).to(device)
        with autocast_for(device):
            terms = loss_fn(ae, x)
        stop_if_not_finite(terms["loss"].detach(), "loss", step, out, device)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        norm = clip_gradients(ae.parameters(), cfg.grad_clip, step, out, device)
        opt.step()
        sched.step()
        return {k: float(v.detach()) for k, v in terms.items()} | {"grad_norm": norm, "lr": sched.get_last_lr()[0]}

    def after(step: int, last: dict) -> None:
        if due(step, cfg.log_every, cfg.steps):
            logger.log(step, last)
        if validate is not None and cfg.val_every and step % cfg.val_every == 0:
            logger.log(step, validate(ae, step))
        if due(step, cfg.ckpt_every, cfg.steps):
            save_checkpoint(out / "checkpoints", step, {
                "model": ae.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "step": step, "rng": capture_rng_state(), "config": asdict(cfg),
            }, keep=cfg.keep)  # fmt: skip

    make = functools.partial(make_batch, data, ae.modality, cfg=cfg, geometry=ae.geometry)
    with step_stream(make, start, cfg.steps, cfg.workers, data) as next_batch:
        last = step_loop(cfg.steps, start, f"train {ae.kind}", cfg.progress, one_step, after)
    export_with_stats(ae, data, cfg, out / "export")
    logger.close()
    return last


def _resume(out: Path, device, ae: Autoencoder, opt, sched) -> int:
    found = latest_checkpoint(out / "checkpoints")
    if found is None:
        return 0
    state = load_checkpoint(found, map_location=device)
    ae.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    restore_rng_state(state["rng"])
    log.info("resumed from %s at step %d", found, int(state["step"]))
    return int(state["step"])


class AERoundTrip:
    """validate(ae, step) -> {"val/<metric>": value}: avgen.evaluation's round-trip report of the AE's modality on
    fixed clips (with their object masks), in eval mode; the global RNG state is restored, so a run with validation
    trains exactly like one without."""

    def __init__(self, clips, masks, frame: float) -> None:
        self.clips, self.masks, self.frame = clips, masks, frame

    def __call__(self, ae: Autoencoder, step: int) -> dict[str, float]:
        from avgen import evaluation

        rng, was = torch.get_rng_state(), ae.training
        ae.eval()
        try:
            if ae.modality == "video":
                report = evaluation.video_report(self.clips, evaluation.decode_video(self.clips, ae), self.masks,
                                                 self.frame)  # fmt: skip
            else:
                report = evaluation.audio_report(self.clips, evaluation.decode_audio(self.clips, ae), self.frame)
        finally:
            torch.set_rng_state(rng)
            ae.train(was)
        return {f"val/{k}": v for k, v in report.items()}


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
