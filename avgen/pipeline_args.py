"""What AVGenPipeline's call takes besides media: sampler settings under two spellings, seeds or generators, prompts.

Two spellings name each sampler setting: diffusers' (what users of its pipelines type every day) and avgen's own
(the avgen-generate keys, the YAML of conf/sampler). Either may be given; both with different values is refused.

    num_inference_steps   steps       ODE steps
    guidance_scale        cfg_video   text guidance on the video
    audio_guidance_scale  cfg_audio   text guidance on the audio
    sync_guidance_scale   cfg_sync    guidance on the other modality (avgen.sampling.guided_velocity); 1: off

Noise: clip j of a call (prompt-major: prompt 0's clips first) draws its video then its audio noise from its own
generator. seed=s gives clip j torch.Generator().manual_seed(s + j), so pipe([a, b], seed=s) makes the clips of
pipe(a, seed=s) and pipe(b, seed=s + 1). generator=g shares one generator, drawn in clip order; a list gives one each.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from avgen.errors import InputError

ALIASES = {
    "num_inference_steps": "steps",
    "guidance_scale": "cfg_video",
    "audio_guidance_scale": "cfg_audio",
    "sync_guidance_scale": "cfg_sync",
}  # diffusers' name -> avgen's name


@dataclass
class SamplerSettings:
    method: str = "euler"
    steps: int = 16
    shift: float = 1.0
    cfg_video: float = 3.0
    cfg_audio: float = 3.0
    cfg_sync: float = 1.0  # guidance on the other modality (avgen.sampling.guided_velocity); 1: off

    def __post_init__(self) -> None:
        """Settings that cannot work are refused here, naming the key (as avgen-generate spells it)."""
        if self.method not in ("euler", "heun"):
            raise InputError(f"method={self.method}: use euler or heun")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise InputError(f"steps={self.steps} must be a whole number >= 1")
        for key in ("shift", "cfg_video", "cfg_audio", "cfg_sync"):
            value = getattr(self, key)
            if not math.isfinite(value) or value < 0 or (key == "shift" and value == 0):
                raise InputError(f"{key}={value} must be a finite number {'> 0' if key == 'shift' else '>= 0'}")

    def merged(self, **overrides) -> SamplerSettings:
        """These settings with `overrides` (either spelling; None: keep) applied and checked."""
        own = {f.name for f in fields(self)}
        values = {k: v for k, v in canonical(overrides).items() if v is not None}
        unknown = sorted(set(values) - own)
        if unknown:
            names = ", ".join([*sorted(own), *ALIASES])
            raise InputError(f"unknown sampler setting {unknown[0]!r}: use one of {names}")
        floats = {k: float(v) for k, v in values.items() if k not in ("method", "steps")}
        return replace(self, **{**values, **floats})


def canonical(kwargs: dict) -> dict:
    """Sampler keyword arguments under avgen's names; a setting named twice with different values is refused."""
    out = {k: v for k, v in kwargs.items() if k not in ALIASES}
    for name, alias in ALIASES.items():
        value = kwargs.get(name)
        if value is None:
            continue
        if out.get(alias) is not None and out[alias] != value:
            raise InputError(f"{name}={value} and {alias}={out[alias]} set the same thing: give only one of them")
        out[alias] = value
    return out


def prompt_list(prompt: str | Sequence[str], per_prompt: int) -> list[str]:
    """Each prompt repeated per_prompt times, prompt-major (the order of the returned clips)."""
    if isinstance(per_prompt, bool) or not isinstance(per_prompt, int) or per_prompt < 1:
        raise InputError(f"num_clips_per_prompt={per_prompt} must be a whole number >= 1")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise InputError("prompt must be a string or a non-empty list of strings")
    return [p for p in prompts for _ in range(per_prompt)]


@dataclass(frozen=True)
class Noise:
    """Where each clip's noise comes from: seeds (window k of clip j: seed_j + k, as extend has always drawn) or
    generators (window k: the next draws of the same generators)."""

    seeds: tuple[int, ...] | None = None
    generators: tuple[torch.Generator, ...] | None = None

    @classmethod
    def of(cls, n: int, seed: int | None, generator: torch.Generator | Sequence[torch.Generator] | None) -> Noise:
        """The noise of n clips from seed= or generator= (neither: seed 0)."""
        if generator is None:
            try:
                s = 0 if seed is None else operator.index(seed)
            except TypeError:
                raise InputError(f"seed={seed!r} must be a whole number (or pass a torch.Generator)") from None
            return cls(seeds=tuple(s + j for j in range(n)))
        if seed is not None:
            raise InputError("seed= and generator= both choose the noise: give only one of them")
        gens = [generator] * n if isinstance(generator, torch.Generator) else list(generator)
        if len(gens) != n or not all(isinstance(g, torch.Generator) for g in gens):
            raise InputError(f"generator= must be one torch.Generator or a list of {n} (one per clip), "
                             f"got {len(gens)} items")  # fmt: skip
        return cls(generators=tuple(gens))

    def window(self, k: int = 0) -> list[torch.Generator]:
        """One generator per clip for the k-th sampling of this call."""
        if self.seeds is not None:
            return [torch.Generator().manual_seed(s + k) for s in self.seeds]
        return list(self.generators)

    def seed_of(self, j: int) -> str | None:
        """Clip j's seed for its metadata; None when a generator (whose state avgen does not know) drew it."""
        return None if self.seeds is None else str(self.seeds[j])


def draw_noise(generators: Sequence[torch.Generator], video_shape: tuple, audio_shape: tuple):
    """Noise tokens (b, lv, pv), (b, la, pa): per clip, its video then its audio from its own generator, on the
    generator's device (a generator shared by several clips is drawn in clip order)."""
    pairs = [(torch.randn(1, *video_shape, generator=g, device=g.device),
              torch.randn(1, *audio_shape, generator=g, device=g.device)) for g in generators]  # fmt: skip
    return torch.cat([v for v, _ in pairs]), torch.cat([a for _, a in pairs])
