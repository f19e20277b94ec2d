"""Rectified flow with a noise level per token, tasks as masks, and a per-sample normalised loss.

The flow convention and the schedule shift are stated once in avgen/flow.py; which tokens a task holds clean comes
from the task table (avgen/tasks.py), the same rule the sampler uses.

Everything random (noise, noise levels, task, caption dropout) is drawn from one generator per sample seeded by
(seed, step, global sample index), so the result does not depend on how a global batch is split across ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from avgen.errors import InputError
from avgen.flow import shift_time
from avgen.tasks import CONTINUATION, TASKS, given_masks


def sample_generator(seed: int, step: int, index: int) -> torch.Generator:
    """A CPU generator that is a pure function of (seed, step, global sample index)."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + step) * 2_147_483_647 + index & 0x7FFF_FFFF_FFFF_FFFF)
    return g


@dataclass
class Draws:
    """Per-sample randomness of one training batch."""

    t_video: torch.Tensor  # (b,)
    t_audio: torch.Tensor  # (b,)
    eps_video: torch.Tensor  # (b, lv, pv)
    eps_audio: torch.Tensor  # (b, la, pa)
    task: list[str]
    drop_text: torch.Tensor  # (b,) bool
    prefix_seconds: torch.Tensor  # (b,) seconds given when the task gives a prefix (extend)
    dropped: torch.Tensor  # (b,) 0: both modalities, 1: video at pure noise, 2: audio at pure noise (t2av only)


@dataclass
class FlowObjective:
    """Rectified flow loss over interleaved AV tokens.

    task_weights: relative frequency of the tasks of avgen.tasks.TASKS that training draws: joint text->AV, audio
    given (a2v), video given (v2a) and continuation (extend, with extend_range of the clip given).
    """

    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 1.0
    video_weight: float = 1.0
    audio_weight: float = 1.0
    caption_dropout: float = 0.1
    task_weights: dict = field(default_factory=lambda: {"t2av": 0.7, "a2v": 0.1, "v2a": 0.1, CONTINUATION: 0.1})
    extend_range: tuple[float, float] = (0.25, 0.75)  # fraction of the clip given in continuation
    # share of t2av samples with one modality (video or audio, even odds) at pure noise (t = 1): the model learns
    # each modality without the other, which is the negative branch of sync guidance (sampling.guided_velocity)
    modality_dropout: float = 0.0
    # audio tokens weighted 1 + onset_weight * (their change from the previous token / the clip's mean change):
    # impacts and syllable onsets, a few % of the tokens, count for more (0: plain mean)
    onset_weight: float = 0.0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.task_weights) - set(TASKS))
        if unknown:
            raise InputError(f"objective.task_weights has unknown tasks {unknown}: use names from {list(TASKS)}")
        if not 0.0 <= self.modality_dropout <= 1.0:
            raise InputError(f"objective.modality_dropout={self.modality_dropout} must lie in [0, 1]")
        if not self.onset_weight >= 0.0:
            raise InputError(f"objective.onset_weight={self.onset_weight} must be >= 0")

    def levels(self, u: torch.Tensor) -> torch.Tensor:
        """Standard normal draws -> shifted logit-normal noise levels."""
        return shift_time(torch.sigmoid(self.logit_mean + self.logit_std * u), self.shift)

    def draw(self, seeds: list[tuple[int, int, int]], video_shape, audio_shape, duration: float) -> Draws:
        """One generator per sample: (seed, step, index) -> independent t_video, t_audio, noise, task, dropout."""
        names = list(self.task_weights)
        weights = torch.tensor([float(self.task_weights[n]) for n in names])
        tv, ta, ev, ea, tasks, drop, cont, dropped = [], [], [], [], [], [], [], []
        for seed, step, index in seeds:
            g = sample_generator(seed, step, index)
            u = torch.randn(2, generator=g)
            tv.append(self.levels(u[0]))
            ta.append(self.levels(u[1]))
            ev.append(torch.randn(video_shape, generator=g))
            ea.append(torch.randn(audio_shape, generator=g))
            tasks.append(names[int(torch.multinomial(weights, 1, generator=g))])
            r = torch.rand(2, generator=g)
            drop.append(bool(r[0] < self.caption_dropout))
            lo, hi = self.extend_range
            cont.append(duration * (lo + (hi - lo) * float(r[1])))
            m = torch.rand(2, generator=g)  # drawn last: the draws above do not depend on modality_dropout
            drops = tasks[-1] == "t2av" and bool(m[0] < self.modality_dropout)
            dropped.append(0 if not drops else 1 + int(m[1] < 0.5))
        return Draws(torch.stack(tv), torch.stack(ta), torch.stack(ev), torch.stack(ea), tasks,
                     torch.tensor(drop), torch.tensor(cont), torch.tensor(dropped))  # fmt: skip

    def __call__(self, model, x0_video, x0_audio, text, text_mask, layout, seeds, *,
                 text_spans: torch.Tensor | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
        """x0_video (b, lv, pv), x0_audio (b, la, pa): clean tokens; seeds: (seed, step, index) per sample;
        text_spans (b, s, 2): the text tokens' time spans for scripts (None: untimed captions)."""
        device = x0_video.device
        d = self.draw(seeds, x0_video.shape[1:], x0_audio.shape[1:], layout.span / layout.ref_rate)
        gv, ga = (m.to(device) for m in given_masks(d.task, layout, d.prefix_seconds))
        dropped = d.dropped.to(device)[:, None]  # (b, 1)
        tv = torch.where(gv, 0.0, torch.where(dropped == 1, 1.0, d.t_video.to(device)[:, None]))  # (b, lv): 0 given
        ta = torch.where(ga, 0.0, torch.where(dropped == 2, 1.0, d.t_audio.to(device)[:, None]))  # (b, la)
        ev, ea = d.eps_video.to(device), d.eps_audio.to(device)
        xv = (1 - tv[..., None]) * x0_video + tv[..., None] * ev  # (b, lv, pv)
        xa = (1 - ta[..., None]) * x0_audio + ta[..., None] * ea  # (b, la, pa)
        vv, va = model(xv, xa, tv, ta, text, text_mask, layout, drop_text=d.drop_text.to(device), text_spans=text_spans)
        lv = per_sample_loss(vv, ev - x0_video, ~gv)  # (b,)
        weights = onset_weights(x0_audio, self.onset_weight) if self.onset_weight else None  # (b, la)
        la = per_sample_loss(va, ea - x0_audio, ~ga, weights)  # (b,)
        loss = (self.video_weight * lv + self.audio_weight * la).mean()
        return {"loss": loss, "loss_video": lv.mean().detach(), "loss_audio": la.mean().detach()}


def per_sample_loss(pred: torch.Tensor, target: torch.Tensor, keep: torch.Tensor,
                    weights: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """(Weighted) mean squared error over each sample's kept tokens: (b, l, p), (b, l, p), (b, l), weights (b, l) ->
    (b,). 0 where none kept."""
    err = (pred.float() - target.float()).pow(2).mean(-1)  # (b, l)
    w = keep.float() if weights is None else keep * weights.float()  # (b, l)
    return (err * w).sum(1) / w.sum(1).clamp_min(1e-12)


def onset_weights(x0: torch.Tensor, strength: float) -> torch.Tensor:
    """Clean tokens (b, l, p) -> weights (b, l): 1 + strength * (the token's RMS change from the previous token,
    relative to the clip's mean change). Reads the tokens only, so it works on any data."""
    change = (x0[:, 1:] - x0[:, :-1]).float().pow(2).mean(-1).sqrt()  # (b, l - 1)
    change = torch.cat([change[:, :1], change], dim=1)  # (b, l): the first token takes its successor's change
    return 1 + strength * change / change.mean(1, keepdim=True).clamp_min(1e-8)
