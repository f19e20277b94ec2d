"""Sampling: stateless ODE solvers over a shifted schedule, per-modality classifier-free guidance, tasks as masks.

The solvers take a velocity function v(xs, t_tokens) -> vs over a tuple of tensors (video tokens, audio tokens), so
both modalities are stepped together. Given tokens (a2v, v2a, extend) are held exactly: their noise level is 0 and
their values are written back after every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from avgen.errors import InputError
from avgen.flow import shift_time

Tensors = tuple[torch.Tensor, ...]
VelocityFn = Callable[[Tensors, Tensors], Tensors]


def schedule(steps: int, shift: float = 1.0) -> torch.Tensor:
    """steps + 1 noise levels from 1 to 0, shifted with t' = s t / (1 + (s - 1) t)."""
    if steps < 1:
        raise InputError(f"steps must be >= 1, got {steps}")
    return shift_time(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), shift)


@dataclass
class Given:
    """Tokens held fixed during sampling: masks (b, l) per modality and their clean values (b, l, p)."""

    masks: Tensors
    values: Tensors

    def apply(self, xs: Tensors) -> Tensors:
        return tuple(
            torch.where(m[..., None].to(x.device), v.to(x), x)
            for x, m, v in zip(xs, self.masks, self.values, strict=True)
        )

    @classmethod
    def of(cls, masks: tuple[torch.Tensor, torch.Tensor], video=None, audio=None) -> Given | None:
        """Given tokens from a task's masks (avgen.tasks.given_masks) and the encoded tokens (b, l, p) of what is
        given; None when the task gives nothing. A modality that gives nothing needs no values."""
        mv, ma = masks
        if not (mv.any() or ma.any()):
            return None
        if (mv.any() and video is None) or (ma.any() and audio is None):
            raise ValueError("the task gives tokens of a modality whose values are missing")
        b = mv.shape[0]
        video = torch.zeros(b, mv.shape[1], 1) if video is None else video  # (b, l, 1) broadcasts in apply()
        audio = torch.zeros(b, ma.shape[1], 1) if audio is None else audio
        return cls(masks=(mv, ma), values=(video, audio))

    def levels(self, t: float, xs: Tensors) -> Tensors:
        """Per-token noise levels: t everywhere, 0 on given tokens."""
        return tuple(torch.where(m.to(x.device), 0.0, t).to(x.dtype) for x, m in zip(xs, self.masks, strict=True))


def solve(
    velocity: VelocityFn,
    noise: Tensors,
    ts: torch.Tensor,
    method: str = "euler",
    given: Given | None = None,
    progress: bool = False,
) -> Tensors:
    """Integrate dx/dt = v from ts[0] (= 1, noise) to ts[-1] (= 0, data). method: "euler" or "heun"."""
    if method not in ("euler", "heun"):
        raise InputError(f"unknown solver {method!r}: use 'euler' or 'heun'")
    xs = given.apply(noise) if given else noise

    def levels(t: float) -> Tensors:
        return (
            given.levels(t, xs)
            if given
            else tuple(torch.full(x.shape[:2], t, dtype=x.dtype, device=x.device) for x in xs)
        )

    for i in tqdm(range(len(ts) - 1), disable=not progress, desc="sampling", leave=False):
        t, t_next = float(ts[i]), float(ts[i + 1])
        dt = t_next - t
        v = velocity(xs, levels(t))
        proposal = tuple(x + dt * vi for x, vi in zip(xs, v, strict=True))
        if method == "heun" and t_next > 0:
            proposal = given.apply(proposal) if given else proposal
            v2 = velocity(proposal, levels(t_next))
            proposal = tuple(x + dt * 0.5 * (a + b) for x, a, b in zip(xs, v, v2, strict=True))
        xs = given.apply(proposal) if given else proposal
    return xs


def guided_velocity(model_fn: Callable, scales: Sequence[float], sync: float = 1.0, sync_from: int = 0,
                    sync_noise: torch.Tensor | None = None) -> VelocityFn:  # fmt: skip
    """Classifier-free guidance with its own text scale per modality, and sync guidance on the other modality:

        v_m = v_u + s_m (v_c - v_u)                     text guidance (v_u: the null text)
        v_k += (sync - 1) (v_c - v_x)                   for the modality k that is not sync_from

    v_x is modality k's velocity when the sync_from modality (0 video, 1 audio) is replaced by sync_noise at noise
    level 1, as if unseen: the term pushes k towards what the other modality shows (LTX-2's modality guidance;
    the DiT learns v_x when the objective's modality_dropout > 0). model_fn(xs, levels, drop_text) -> velocities;
    the branches run as one batch, and a scale of 1 skips its branch (all 1: the conditional velocity exactly).
    """
    if sync != 1.0 and sync_noise is None:
        raise ValueError("sync guidance needs sync_noise: the sync_from modality's tokens at noise level 1")

    def velocity(xs: Tensors, levels: Tensors) -> Tensors:
        b, device = xs[0].shape[0], xs[0].device
        text_on, sync_on = any(s != 1.0 for s in scales), sync != 1.0
        branches = [(xs, levels, False)]
        if text_on:
            branches.append((xs, levels, True))
        if sync_on:
            unseen = tuple(sync_noise.to(x) if m == sync_from else x for m, x in enumerate(xs))
            flat = tuple(torch.ones_like(t) if m == sync_from else t for m, t in enumerate(levels))
            branches.append((unseen, flat, False))
        batch = tuple(torch.cat([br[0][m] for br in branches]) for m in range(len(xs)))
        lv = tuple(torch.cat([br[1][m] for br in branches]) for m in range(len(xs)))
        drop = torch.cat([torch.full((b,), br[2], dtype=torch.bool, device=device) for br in branches])
        out = [v.split(b) for v in model_fn(batch, lv, drop)]  # per modality: one (b, l, p) per branch
        vs = []
        for m, (parts, s) in enumerate(zip(out, scales, strict=True)):
            v = parts[1] + s * (parts[0] - parts[1]) if text_on else parts[0]
            if sync_on and m != sync_from:
                v = v + (sync - 1.0) * (parts[0] - parts[-1])
            vs.append(v)
        return tuple(vs)

    return velocity
