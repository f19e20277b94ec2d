"""Cross-modal dependence: does the DiT use one modality to make the other?

    gap_v2a = (L_a(other) - L_a(own)) / L_a(other)

L_a is the audio flow-matching MSE over all audio tokens (v = eps - x0, as in avgen/flow.py) with the video given
clean (noise level 0, as in v2a), averaged over t_audio in LEVELS, with the clip's own caption and fixed noise;
"other" gives each clip the video of another clip of the same scene family (a fixed derangement). gap_a2v swaps the
roles. A joint model whose gaps are zero is two unconditional models sharing weights.

The same losses restricted to the tokens near an event (a contact, a syllable, a lamp lighting: within one video
frame of it) say whether the other modality helps where it should. Those event times come from the world's ground
truth and serve evaluation only (avgen.evaluation.probes_from_clips); the gaps themselves read nothing but tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

LEVELS = (0.25, 0.5, 0.75)
# A diagnostic beside the definition: the gap with the scored modality at pure noise, where it cannot help itself
# and all it knows comes from the other one (in the ablation, dependence showed there first).
NOISE_LEVEL = 1.0


@dataclass
class ProbeSet:
    """Fixed clips to probe a model with: normalised tokens, caption states, fixed noise and the derangement."""

    video: torch.Tensor  # (n, lv, pv) clean tokens
    audio: torch.Tensor  # (n, la, pa)
    text: torch.Tensor  # (n, s, e)
    text_mask: torch.Tensor  # (n, s)
    families: list[str]
    other: torch.Tensor  # (n,) index of the clip whose other modality is given instead (same family, never itself)
    eps_video: torch.Tensor  # (n, lv, pv) fixed noise
    eps_audio: torch.Tensor  # (n, la, pa)
    near_video: torch.Tensor  # (n, lv) bool: tokens within a frame of an event
    near_audio: torch.Tensor  # (n, la) bool


def derangement(families: Sequence[str]) -> torch.Tensor:
    """Each clip -> the next clip of its family, cyclically (families need two clips or more)."""
    other = torch.arange(len(families))
    for fam in sorted(set(families)):
        idx = [i for i, f in enumerate(families) if f == fam]
        if len(idx) < 2:
            raise ValueError(f"the probe needs two clips or more of family {fam!r}")
        for n, i in enumerate(idx):
            other[i] = idx[(n + 1) % len(idx)]
    return other


def near_events(layout, events: Sequence[Sequence[float]], tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip, the tokens whose time span comes within `tol` seconds of one of its events: (n, lv), (n, la)."""
    out = []
    for start, end in layout.bounds():  # each token's true span (a causal AE's first window is shorter)
        lo, hi = start - tol, end + tol  # (l,)
        masks = [torch.zeros(len(start), dtype=torch.bool)]
        masks = [
            torch.stack([(lo <= e) & (e <= hi) for e in ev]).any(0) if len(ev) else masks[0] for ev in events
        ]  # fmt: skip
        out.append(torch.stack(masks))
    return out[0], out[1]


def make_probe_set(video, audio, text, text_mask, families, layout, events, frame_seconds: float,
                   seed: int = 0) -> ProbeSet:  # fmt: skip
    """Tokens (n, l, p) and caption states of n clips -> a ProbeSet with noise drawn once from `seed`."""
    g = torch.Generator().manual_seed(seed)
    eps_v = torch.randn(video.shape, generator=g)
    eps_a = torch.randn(audio.shape, generator=g)
    near_v, near_a = near_events(layout, events, frame_seconds)
    return ProbeSet(video.float(), audio.float(), text, text_mask, list(families), derangement(families), eps_v,
                    eps_a, near_v, near_a)  # fmt: skip


def _conditioned_losses(model, probes: ProbeSet, layout, target: str, levels, batch: int):
    """Per clip (n,) and per-token (n, l) audio (target="audio") or video MSE, averaged over `levels`, with the other
    modality given clean from the clip itself (own) and from probes.other (other)."""
    n = probes.video.shape[0]
    dev = next(model.parameters()).device
    x0 = probes.audio if target == "audio" else probes.video  # the modality scored
    cond = probes.video if target == "audio" else probes.audio  # the modality given
    eps = probes.eps_audio if target == "audio" else probes.eps_video
    own, other = torch.zeros(x0.shape[:2]), torch.zeros(x0.shape[:2])
    for t in levels:
        xt = (1 - t) * x0 + t * eps  # (n, l, p)
        for start in range(0, n, batch):
            sl = slice(start, min(n, start + batch))
            k = sl.stop - sl.start
            noisy = xt[sl].repeat(2, 1, 1)  # (2k, l, p): own first, then other
            given = torch.cat([cond[sl], cond[probes.other[sl]]])  # (2k, l', p')
            t_noisy = torch.full(noisy.shape[:2], float(t))
            t_given = torch.zeros(given.shape[:2])
            args = (given, noisy, t_given, t_noisy) if target == "audio" else (noisy, given, t_noisy, t_given)
            text, mask = probes.text[sl].repeat(2, 1, 1), probes.text_mask[sl].repeat(2, 1)
            vv, va = model(*(a.to(dev) for a in args), text.to(dev), mask.to(dev), layout)
            v = (va if target == "audio" else vv).float().cpu()
            err = (v - (eps[sl] - x0[sl]).repeat(2, 1, 1)).pow(2).mean(-1)  # (2k, l)
            own[sl] += err[:k] / len(levels)
            other[sl] += err[k:] / len(levels)
    return own, other


def _gap(own: torch.Tensor, other: torch.Tensor, keep: torch.Tensor) -> tuple[float, float, float]:
    """(L(own), L(other), gap) over the kept tokens of all clips."""
    k = keep.float()
    lo, lx = float((own * k).sum() / k.sum().clamp_min(1)), float((other * k).sum() / k.sum().clamp_min(1))
    return lo, lx, (lx - lo) / lx if lx > 0 else float("nan")


@torch.no_grad()
def dependence(model, probes: ProbeSet, layout, levels: Sequence[float] = LEVELS, batch: int = 16) -> dict:
    """{family: {"v2a": {...}, "a2v": {...}}} with own/other losses and gaps over all tokens and event tokens,
    plus "all" over every clip. The model runs in eval mode; its training mode is restored."""
    was = model.training
    model.eval()
    try:
        per = {
            "v2a": _conditioned_losses(model, probes, layout, "audio", levels, batch),
            "a2v": _conditioned_losses(model, probes, layout, "video", levels, batch),
        }
    finally:
        model.train(was)
    near = {"v2a": probes.near_audio, "a2v": probes.near_video}
    out = {}
    for fam in [*sorted(set(probes.families)), "all"]:
        rows = torch.tensor([fam in ("all", f) for f in probes.families])
        out[fam] = {}
        for direction, (own, other) in per.items():
            everywhere = rows[:, None].expand_as(own)
            lo, lx, gap = _gap(own, other, everywhere)
            elo, elx, egap = _gap(own, other, everywhere & near[direction])
            out[fam][direction] = {"own": lo, "other": lx, "gap": gap, "own_events": elo, "other_events": elx,
                                   "gap_events": egap}  # fmt: skip
    return out


def probe(model, probes: ProbeSet, layout) -> dict:
    """dependence() at LEVELS, with each direction's gap at NOISE_LEVEL added as "gap_at_noise"."""
    out = dependence(model, probes, layout)
    noise = dependence(model, probes, layout, levels=(NOISE_LEVEL,))
    for fam, dirs in out.items():
        for direction, r in dirs.items():
            r["gap_at_noise"] = noise[fam][direction]["gap"]
    return out


def headline(result: dict, prefix: str = "val/") -> dict[str, float]:
    """Flat metrics for logging: gap_v2a on bounce scenes (impacts), gap_a2v on talking heads (lips), and every
    family's gaps and own-condition losses (loss_v2a_own: L_a(own)) under keys ending in /family."""
    flat = {}
    for fam, dirs in result.items():
        for direction, r in dirs.items():
            flat[f"{prefix}gap_{direction}/{fam}"] = r["gap"]
            flat[f"{prefix}gap_{direction}_events/{fam}"] = r["gap_events"]
            flat[f"{prefix}loss_{direction}_own/{fam}"] = r["own"]
            if "gap_at_noise" in r:
                flat[f"{prefix}gap_{direction}_at_noise/{fam}"] = r["gap_at_noise"]
    for direction, fam in (("v2a", "bounce"), ("a2v", "talk")):
        if fam in result:
            flat[f"{prefix}gap_{direction}"] = result[fam][direction]["gap"]
            flat[f"{prefix}gap_{direction}_events"] = result[fam][direction]["gap_events"]
    return flat
