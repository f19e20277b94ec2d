"""`AVWorld`: a deterministic dataset of procedural audio-visual clips."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from avgen.data.avworld import scenes, timelines
from avgen.data.avworld.captions import CAPTIONS
from avgen.data.avworld.render import to_uint8
from avgen.data.avworld.scenes import Frame
from avgen.data.avworld.vocab import FAMILIES
from avgen.errors import InputError
from avgen.media import AVClip

# family -> scene function; the families with timelines (dialogue, scripted) only when asked for
FAMILY_FNS = {**scenes.FAMILY_FNS, **timelines.FAMILY_FNS}

# what the clips of a (seed, index) are: bumped whenever a change alters them (latent caches record it and refuse
# another version). 1: formant syllables; 2: eSpeak NG speech with phoneme-driven mouths (opening and width).
WORLD_VERSION = 2


class AVWorld(Dataset):
    """Clips where the sound is caused by what is seen; `world[i]` is a pure function of (seed, i).

    Each clip has `meta` = {family, attributes, events (s), seed, index, world_version}; talking heads add mouth and
    mouth_width (per frame), phonemes, visemes and word_times; the families with timelines (dialogue, scripted; only
    drawn when named in `families`) add script, lines, regions, mouths and mouth_widths (avworld/timelines.py).
    `meta` is ground truth: metrics never read it.
    """

    def __init__(
        self,
        seed: int = 0,
        duration: float = 2.0,
        fps: float = 16,
        size: int | Sequence[int] = 64,
        sample_rate: int = 16000,
        families: Sequence[str] | None = None,
        channels: int = 1,
        length: int = 1_000_000,
    ) -> None:
        h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        families = tuple(families) if families else FAMILIES
        unknown = [f for f in families if f not in FAMILY_FNS]
        if unknown:
            raise InputError(f"unknown avworld families {unknown}; choose from {list(FAMILY_FNS)}")
        if channels not in (1, 2):
            raise InputError(f"avworld channels must be 1 or 2, got {channels}")
        if duration <= 0 or fps <= 0 or sample_rate <= 0 or h < 8 or w < 8:
            raise InputError(f"bad avworld format: duration={duration} fps={fps} size={h}x{w} sr={sample_rate}")
        self.seed, self.families, self.length = int(seed), families, int(length)
        self.frame = Frame(
            t=round(duration * fps), h=h, w=w, fps=float(fps), sr=int(sample_rate),
            n=round(duration * sample_rate), channels=channels,
        )  # fmt: skip
        self.fps, self.sample_rate, self.duration = fps, int(sample_rate), float(duration)

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, int(index), 0x5EED])

    def family_of(self, index: int) -> str:
        return self.families[int(self.rng(index).integers(len(self.families)))]

    def object_masks(self, index: int) -> list[tuple[dict, np.ndarray]]:
        """For evaluation only: (attributes, visible coverage (T, H, W) in [0, 1]) of each bouncing object, or of
        the lamp (scripted: the lamp and the dropping object, as present); none for talking heads. Metrics of
        generated clips never see these."""
        scene, _, family = self._scene(index)
        attrs = scene.attributes.get("objects", [scene.attributes] if family == "blink" else [])
        return list(zip(attrs, scene.masks, strict=True))

    def _scene(self, index: int):
        if not 0 <= index < self.length:
            raise IndexError(f"avworld index {index} out of range [0, {self.length})")
        rng = self.rng(index)
        family = self.families[int(rng.integers(len(self.families)))]
        return FAMILY_FNS[family](rng, self.frame), rng, family

    def __getitem__(self, index: int) -> AVClip:
        scene, rng, family = self._scene(index)
        peak = float(np.abs(scene.audio).max())
        target = rng.uniform(0.5, 0.9)
        audio = scene.audio * (target / peak) if peak > 0 else scene.audio
        audio = audio + room_tone(rng, audio.shape)
        caption = CAPTIONS[family](rng, scene.attributes)
        meta = {"family": family, "attributes": scene.attributes, "events": [float(e) for e in scene.events],
                "seed": self.seed, "index": int(index), "world_version": WORLD_VERSION}  # fmt: skip
        if scene.mouth is not None:
            meta["mouth"] = scene.mouth
        meta.update(scene.extra)  # ground truth for evaluation only (talk: phonemes, visemes, word times; timed
        # families: script, lines, regions, mouths)
        return AVClip(
            video=torch.from_numpy(to_uint8(scene.video)),
            audio=torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)),
            fps=self.fps,
            sample_rate=self.sample_rate,
            caption=caption,
            meta=meta,
        )


ROOM_TONE = 0.003  # std of the background noise (about -50 dBFS): real recordings are never digitally silent


def room_tone(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Quiet, slightly low-passed noise under every clip, so no spectrogram bin is exact digital silence."""
    noise = rng.standard_normal(shape).astype(np.float32)
    noise[..., 1:] += noise[..., :-1]  # a gentle low-pass
    return (ROOM_TONE / np.sqrt(2.0)) * noise
