"""The one table of tasks, and the one rule for which tokens a task gives: read by the objective (training), the
sampler, the pipeline, avgen-generate and the app.

Every task samples sound and frames together with one DiT; a task only says which tokens are held clean (noise level
0, values written back every step) and what the user brings and gets back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from avgen.errors import InputError

MAX_LENGTH_FACTOR = 2.0  # inputs up to this many times the trained duration are generated in one window


@dataclass(frozen=True)
class Task:
    name: str
    given: str  # which tokens are held: "none", "video", "audio", or "prefix" (both modalities up to a time)
    label: str  # the app's menu text
    input: str | None = None  # what the user brings: None (a prompt), "audio", "video" or "clip"
    keeps: tuple[bool, bool] = (True, True)  # which modalities the output keeps (video, audio)
    sync_from: str = "video"  # the modality that sync guidance makes the other one follow (avgen.sampling)

    @property
    def sync_index(self) -> int:
        return {"video": 0, "audio": 1}[self.sync_from]

    @property
    def needs_prompt(self) -> bool:
        return self.input is None


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task("t2av", "none", "t2av: text → video with sound"),
        Task("a2v", "audio", "a2v: sound → video (upload or record audio)", input="audio", sync_from="audio"),
        Task("v2a", "video", "v2a: video → sound (upload a video)", input="video"),
        Task("extend", "prefix", "extend: continue a clip (upload a clip)", input="clip"),
        Task("t2v", "none", "t2v: text → video", keeps=(True, False)),
        Task("t2a", "none", "t2a: text → sound", keeps=(False, True)),
    )
}
CONTINUATION = "extend"  # the task that gives a prefix of both modalities (training draws its length)


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]


def given_masks(
    tasks: Sequence[str], layout, prefix_seconds: Sequence[float] | torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token masks of the tokens each sample's task holds clean: video (b, lv), audio (b, la).
    prefix_seconds[i]: how much of sample i is given when its task gives a prefix."""
    b = len(tasks)
    gv = torch.zeros(b, layout.lv, dtype=torch.bool)
    ga = torch.zeros(b, layout.la, dtype=torch.bool)
    for i, name in enumerate(tasks):
        given = get_task(name).given
        if given == "video":
            gv[i] = True
        elif given == "audio":
            ga[i] = True
        elif given == "prefix":
            if prefix_seconds is None:
                raise InputError(f"task {name!r} gives a prefix: pass prefix_seconds")
            gv[i], ga[i] = layout.token_mask_before(float(prefix_seconds[i]))
    return gv, ga
