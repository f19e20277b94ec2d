"""Validation during DiT training: a fixed prompt set sampled with the EMA weights, previews and sync metrics, and
the cross-modal dependence probe (val/gap_v2a, val/gap_a2v: avgen.metrics.dependence) on fixed held-out clips.

Runs on rank 0 only, outside the training RNG (its own generators; global RNG state restored), so a run with
validation trains exactly like one without.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from avgen.metrics.dependence import ProbeSet, headline, probe
from avgen.metrics.sync import av_align, mouth_sync, offset_error

# one prompt per avworld family and a few attribute combinations; the talking heads also get mouth_sync
VALIDATION_PROMPTS = (
    "a small red circle bounces off the walls with wooden knocks on a black background",
    "a large blue square and a small yellow triangle bounce around with metallic clangs and glassy pings",
    "a woman says 'apple seven' on a grey background",
    "a man with a deep voice speaks the words 'hello river'",
    "a green square lamp blinks with a high beep each time it lights up",
)


class Validator:
    """validator(ema_model, step) -> metrics; writes out_dir/previews/step_XXXXXXX/*.mp4."""

    def __init__(self, pipeline_factory, out_dir: str | Path, prompts=VALIDATION_PROMPTS, seed: int = 1234,
                 steps: int | None = None, previews: bool = True, probes: ProbeSet | None = None,
                 layout=None) -> None:  # fmt: skip
        self.factory, self.out, self.prompts = pipeline_factory, Path(out_dir), list(prompts)
        self.seed, self.steps, self.previews = seed, steps, previews
        self.probes, self.layout = probes, layout

    def __call__(self, model, step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        cpu_rng, np_rng = torch.get_rng_state(), np.random.get_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        was_training = model.training
        try:
            pipe = self.factory(model)
            t_probe = time.perf_counter()
            gaps = headline(probe(model, self.probes, self.layout)) if self.probes is not None else {}
            if gaps:
                gaps["val/probe_seconds"] = time.perf_counter() - t_probe
            sampler = {"steps": self.steps} if self.steps else {}
            offsets, aligns, mouths = [], [], []
            for i, prompt in enumerate(self.prompts):
                clip = pipe(prompt, seed=self.seed + i, **sampler)
                offsets.append(offset_error(clip)[0])  # untrustworthy offsets count as the search limit
                aligns.append(av_align(clip))
                if " says " in prompt or " speaks " in prompt or " talks" in prompt:
                    mouths.append(mouth_sync(clip))
                if self.previews:
                    clip.save(self.out / "previews" / f"step_{step:07d}" / f"{i:02d}.mp4", metadata={"prompt": prompt})
        finally:
            torch.set_rng_state(cpu_rng)
            np.random.set_state(np_rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            model.train(was_training)
        return gaps | {
            "val/abs_offset_ms": 1000 * float(np.median(offsets)),
            "val/av_align": float(np.mean(aligns)),
            "val/mouth_sync": float(np.mean(mouths)) if mouths else float("nan"),
            "val/seconds": time.perf_counter() - t0,
        }
