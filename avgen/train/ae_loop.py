"""Training one autoencoder: deterministic batches, AdamW with warmup + cosine, DDP, exact resume, latent stats.

Batches are a pure function of (seed, step, global clip index): the clip, its crop offset and its posterior noise,
so a resumed run sees exactly the data an uninterrupted one would, and a global batch is the same however it is split
over ranks. Each rank takes a contiguous slice of it; every loss term is a mean of per-clip values (see
avgen.autoencoders.losses), so DDP's average of the ranks' gradients is the gradient of the global batch's mean.
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
from avgen.objective import sample_generator
from avgen.train.checkpoint import (
    capture_rng_state,
    clean_run_dir,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from avgen.train.checks import check_config
from avgen.train.distributed import DistInfo, all_gather_objects, all_mean, autocast_for, barrier
from avgen.train.logging import MetricsLogger, rank_log
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
    colour_permute: float = 0.0  # video: share of crops whose RGB channels are shuffled (a random permutation)


def make_batch(data, modality: str, step: int, cfg: AETrainConfig, geometry, rank: int = 0,
               world_size: int = 1) -> torch.Tensor:  # fmt: skip
    """Rank `rank`'s contiguous slice (of world_size equal ones; the default: all) of global batch `step`, clips
    i = step*B .. step*B+B-1 of `data` (wrapping around): clip i cropped at an offset drawn from an rng of
    (seed, step, 0xAE, i), so the global batch is the same however it is split. With cfg.colour_permute > 0 that rng
    also shuffles the RGB channels of a share of video crops: avworld's saturated colours cover ~3 % of its pixels
    (faces and grey/white/black backgrounds the rest), and an AE trained on them alone returns a green square grey;
    permuted crops show it every hue over large areas."""
    local = cfg.batch_size // world_size
    items = []
    for i in range(step * cfg.batch_size + rank * local, step * cfg.batch_size + (rank + 1) * local):
        if hasattr(data, "set_epoch"):
            data.set_epoch(i // len(data))
        clip = data[i % len(data)]
        rng = np.random.default_rng([cfg.seed, step, 0xAE, i])
        if modality == "video":
            x = video_to_model(clip.video)  # (3, T, H, W)
            t = x.shape[1] if cfg.crop_frames is None else cfg.crop_frames
            geometry.check_length(t)
            s = int(rng.integers(x.shape[1] - t + 1))
            x = x[:, s : s + t]
            if cfg.colour_permute and rng.random() < cfg.colour_permute:  # drawn after the crop: crops unchanged
                x = x[torch.from_numpy(rng.permutation(3))]
            items.append(x)
        else:
            x = clip.audio
            n = x.shape[1] if cfg.crop_seconds is None else geometry.duration_length(cfg.crop_seconds)
            geometry.check_length(n)
            s = int(rng.integers(x.shape[1] - n + 1))
            items.append(x[:, s : s + n])
    return torch.stack(items)


def posterior_noise(ae: Autoencoder, x: torch.Tensor, seed: int, step: int, first: int) -> torch.Tensor | None:
    """Standard normal posterior draws (b, *latent shape) for x, clips first .. first+b-1 of step `step`: clip i's
    from its own generator (seed, step, i), so they do not depend on the split. None for a deterministic AE."""
    if not ae.variational:
        return None
    shape = ae.latent_shape_of(x)
    draws = [torch.randn(shape, generator=sample_generator(seed, step, first + j)) for j in range(len(x))]
    return torch.stack(draws).to(x.device)


def train_autoencoder(ae: Autoencoder, loss_fn, data, cfg: AETrainConfig, out_dir: str | Path,
                      optimizer: OptimizerFactory | None = None, validate=None,
                      info: DistInfo | None = None) -> dict:  # fmt: skip
    """Train (or resume) `ae` on `data` and export it with measured latent stats to out_dir/export.
    optimizer: params -> optimizer (the optim config group), AdamW from cfg when None; validate(ae, step) -> metrics
    every cfg.val_every steps (in eval mode, outside the training RNG: see AERoundTrip). Under torchrun (info from
    avgen.train.distributed.setup) the ranks train one DDP model on their slices of each batch; rank 0 logs,
    validates, checkpoints and exports while the others wait. Returns the last metrics (means over ranks)."""
    info = info or DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device(cfg.device))
    check_config(cfg, info.world_size)
    out, device = Path(out_dir), info.device
    ae.to(device).train()
    compile_in_place(ae, cfg.compile)  # validation and the latent stats call encode / decode: eager
    net = _parallel(ae, info)
    opt, sched = build_optimizer(ae.parameters(), cfg, optimizer)
    if info.is_main:
        clean_run_dir(out)
    barrier()
    start = _resume(out, info, ae, opt, sched)
    logger = MetricsLogger(out, enabled=info.is_main)
    local = cfg.batch_size // info.world_size
    mine = slice(info.rank * local, (info.rank + 1) * local)  # this rank's clips of each global batch
    local_terms: dict = {}

    def one_step(step: int) -> dict:
        x = next_batch(step).to(device)  # (b, ...): this rank's slice of the global batch (see make)
        noise = posterior_noise(ae, x, cfg.seed, step, step * cfg.batch_size + mine.start)
        with autocast_for(device):
            terms = loss_fn(net, x, noise=noise)
        names = list(terms)
        means = all_mean(torch.stack([terms[k].detach().float() for k in names]))  # one reduction for all terms
        stop_if_not_finite(means[names.index("loss")], "loss", step, out, device)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()  # DDP averages the ranks' gradients: equal slices, so the global mean's gradient
        norm = clip_gradients(ae.parameters(), cfg.grad_clip, step, out, device)
        opt.step()
        sched.step()
        local_terms.update({k: float(v.detach()) for k, v in terms.items()})
        return dict(zip(names, means.tolist(), strict=True)) | {"grad_norm": norm, "lr": sched.get_last_lr()[0]}

    def after(step: int, last: dict) -> None:
        if due(step, cfg.log_every, cfg.steps):
            logger.log(step, last)
            rank_log(out, info, step, local_terms)
        if cfg.val_every and step % cfg.val_every == 0:
            if info.is_main and validate is not None:  # the other ranks need no validator
                logger.log(step, validate(ae, step))
            barrier()
        if due(step, cfg.ckpt_every, cfg.steps):
            _save(out, info, cfg, step, ae, opt, sched)

    make = functools.partial(
        make_batch, data, ae.modality, cfg=cfg, geometry=ae.geometry, rank=info.rank, world_size=info.world_size
    )  # each rank renders only its slice
    with step_stream(make, start, cfg.steps, cfg.workers, data) as next_batch:
        last = step_loop(cfg.steps, start, f"train {ae.kind}", cfg.progress and info.is_main, one_step, after)
    if info.is_main:  # the latent stats measured once, on rank 0
        export_with_stats(ae, data, cfg, out / "export")
    barrier()
    logger.close()
    return last


def _parallel(ae: Autoencoder, info: DistInfo):
    """The module the losses call: a DDP wrapper under torchrun (inputs already on the device), else `ae`."""
    if not info.distributed:
        return ae
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(ae, device_ids=None)


def _save(out: Path, info: DistInfo, cfg: AETrainConfig, step: int, ae: Autoencoder, opt, sched) -> None:
    """Rank 0 writes the checkpoint with every rank's RNG state; the others wait until it is complete."""
    rng = capture_rng_state()
    ranks = all_gather_objects(rng)
    if info.is_main:
        save_checkpoint(out / "checkpoints", step, {
            "model": ae.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step,
            "rng": rng, "rng_ranks": ranks, "world_size": info.world_size, "config": asdict(cfg),
        }, keep=cfg.keep)  # fmt: skip
    barrier()


def _resume(out: Path, info: DistInfo, ae: Autoencoder, opt, sched) -> int:
    found = latest_checkpoint(out / "checkpoints")
    if found is None:
        return 0
    state = load_checkpoint(found, map_location=info.device)
    ae.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    ranks = state.get("rng_ranks") or [state["rng"]]
    restore_rng_state(ranks[info.rank] if len(ranks) == info.world_size else state["rng"])
    if info.is_main:
        log.info("resumed from %s at step %d", found, int(state["step"]))
    return int(state["step"])


class AERoundTrip:
    """validate(ae, step) -> {"val/<metric>": value}: avgen.evaluation's round-trip report of the AE's modality on
    fixed clips (with their object masks), in eval mode; the global RNG state is restored, so a run with validation
    trains exactly like one without."""

    def __init__(self, clips, masks, frame: float) -> None:
        self.clips, self.masks, self.frame = clips, masks, frame
        self.real_speech: dict | None = None  # the real clips' speech WER: the same at every validation

    def __call__(self, ae: Autoencoder, step: int) -> dict[str, float]:
        from avgen import evaluation

        rng, was = torch.get_rng_state(), ae.training
        ae.eval()
        try:
            if ae.modality == "video":
                report = evaluation.video_report(self.clips, evaluation.decode_video(self.clips, ae), self.masks,
                                                 self.frame)  # fmt: skip
            else:
                if self.real_speech is None:
                    self.real_speech = evaluation.speech_rows(self.clips, {"real": self.clips})
                report = evaluation.audio_report(self.clips, evaluation.decode_audio(self.clips, ae), self.frame,
                                                 self.real_speech)  # fmt: skip
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
