"""Training the joint DiT on cached latents: deterministic batches, AdamW + warmup/cosine, EMA, exact resume.

Device, dtype and autocast are decided once here (bf16 autocast on CUDA, fp32 on CPU). Every random choice is a
pure function of (seed, step, global sample index): the data order from (seed, epoch), the noise, noise levels, task
and caption dropout from the objective's per-sample generators.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from avgen.train.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from avgen.train.ema import EMA
from avgen.train.logging import MetricsLogger
from avgen.train.schedule import lr_factor


@dataclass
class TrainConfig:
    steps: int = 20000
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 500
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ckpt_every: int = 500
    keep: int = 3
    log_every: int = 20
    val_every: int = 0  # 0: no validation
    seed: int = 0
    device: str = "cpu"
    progress: bool = True


def batch_indices(step: int, batch: int, n: int, seed: int) -> list[int]:
    """Dataset indices of batch `step`: a fresh permutation of the data each epoch, from (seed, epoch)."""
    out = []
    for i in range(step * batch, (step + 1) * batch):
        epoch, pos = divmod(i, n)
        out.append(int(np.random.default_rng([seed, epoch]).permutation(n)[pos]))
    return out


class LatentBatcher:
    """Cached raw latents -> normalised tokens and text states for one step."""

    def __init__(self, shards, layout, video_ae, audio_ae, text_encoder, device) -> None:
        self.shards, self.layout, self.text = shards, layout, text_encoder
        self.video_ae, self.audio_ae, self.device = video_ae, audio_ae, device

    def __call__(self, indices: list[int]):
        zv = torch.stack([self.shards.video[i] for i in indices])  # (b, c, t, h, w)
        za = torch.stack([self.shards.audio[i] for i in indices])  # (b, c, n)
        xv, xa = self.layout.patchify(self.video_ae.normalize(zv), self.audio_ae.normalize(za))
        states, mask = self.text([self.shards.captions[i] for i in indices])
        return xv.to(self.device), xa.to(self.device), states.to(self.device), mask.to(self.device)


def train_dit(
    model, objective, batcher: LatentBatcher, n_items: int, cfg: TrainConfig, out_dir: str | Path, validate=None
) -> dict:
    """Train (or resume) the DiT; checkpoints in out_dir/checkpoints, metrics in out_dir/metrics.jsonl.
    validate(ema_model, step) -> metrics runs every cfg.val_every steps (see avgen.train.validate)."""
    out = Path(out_dir)
    device = torch.device(cfg.device)
    model.to(device).train()
    ema = EMA(model, cfg.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    step = 0
    found = latest_checkpoint(out / "checkpoints")
    if found is not None:
        state = load_checkpoint(found, map_location=device)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        step = int(state["step"])
        print(f"resumed from {found} at step {step}")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    logger = MetricsLogger(out)
    bar = tqdm(total=cfg.steps, initial=step, disable=not cfg.progress, desc="train dit", dynamic_ncols=True)
    last: dict = {}
    while step < cfg.steps:
        indices = batch_indices(step, cfg.batch_size, n_items, cfg.seed)
        xv, xa, text, mask = batcher(indices)
        seeds = [(cfg.seed, step, i) for i in range(len(indices))]
        with autocast:
            terms = objective(model, xv, xa, text, mask, batcher.layout, seeds)
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(
                f"non-finite loss at step {step}; the last good checkpoint is in {out}/checkpoints"
            )
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if not torch.isfinite(norm):
            raise FloatingPointError(f"non-finite gradient at step {step}; the last good checkpoint is kept")
        opt.step()
        sched.step()
        ema.update(model)
        step += 1
        last = {k: float(v.detach()) for k, v in terms.items()} | {
            "grad_norm": float(norm),
            "lr": sched.get_last_lr()[0],
        }
        bar.update(1)
        bar.set_postfix(loss=f"{last['loss']:.4f}")
        if step % cfg.log_every == 0 or step == cfg.steps:
            logger.log(step, last)
        if validate is not None and cfg.val_every and step % cfg.val_every == 0:
            logger.log(step, validate(ema.model, step))
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save_checkpoint(out / "checkpoints", step, {
                "model": model.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "step": step, "rng": capture_rng_state(), "config": asdict(cfg),
            }, keep=cfg.keep)  # fmt: skip
    bar.close()
    logger.close()
    return last | {"ema": ema}
