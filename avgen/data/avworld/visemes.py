"""Mouth shapes from phonemes: each eSpeak phoneme maps to a viseme (an opening and a width target), the targets are
held over the phoneme's span and smoothed (coarticulation: the lips move towards the next shape before it sounds),
and the jaw opens with the voice's loudness, as a speaking mouth does.

Visemes (opening 0 closed .. 1 wide open; width 0 rounded .. 1 spread):
- closed: p b m (the lips meet)        - labiodental: f v (lower lip to the teeth)
- round: w, u, oU, O (rounded lips)    - spread: i, I, E, eI, j (spread lips)
- open: a, A:, aI, V (jaw open)        - mid: @, 3 (neutral vowel)
- consonant: the rest (t d n l s z k g r h ...)   - rest: pauses
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

VISEMES: dict[str, tuple[float, float]] = {
    "closed": (0.0, 0.55),
    "labiodental": (0.12, 0.6),
    "round": (0.45, 0.0),
    "spread": (0.4, 1.0),
    "open": (0.95, 0.65),
    "mid": (0.55, 0.55),
    "consonant": (0.25, 0.6),
    "rest": (0.0, 0.5),
}
# diphthongs move from one viseme to another within the phoneme
DIPHTHONGS = {"aI": ("open", "spread"), "aU": ("open", "round"), "eI": ("spread", "spread"), "oU": ("round", "round"),
              "OI": ("round", "spread"), "e@": ("spread", "mid"), "i@": ("spread", "mid"), "I@": ("spread", "mid"),
              "U@": ("round", "mid"), "aI@": ("open", "mid"), "aU@": ("open", "mid")}  # fmt: skip
SMOOTH_S = 0.018  # coarticulation: std of the Gaussian smoothing of the target tracks
STRESS = "'," + "%=!"


def viseme_of(phoneme: str) -> str:
    """eSpeak phoneme mnemonic (stress marks allowed) -> viseme name."""
    p = phoneme.strip(STRESS)
    if not p or p.startswith("_"):
        return "rest"
    if p in ("p", "b", "m"):
        return "closed"
    if p in ("f", "v"):
        return "labiodental"
    if p == "w" or p[0] in "uUoO0":
        return "round"
    if p == "j" or p[0] in "iIeE":
        return "spread"
    if p[0] in "aAV":
        return "open"
    if p[0] in "@3":
        return "mid"
    return "consonant"


def shapes_of(phoneme: str) -> tuple[str, str]:
    """(first, second) viseme of a phoneme: two for a diphthong, the same one twice otherwise."""
    p = phoneme.strip(STRESS)
    if p in DIPHTHONGS:
        return DIPHTHONGS[p]
    v = viseme_of(phoneme)
    return v, v


def mouth_tracks(phonemes: list[tuple[str, int]], n: int, sr: int, loudness: np.ndarray | None = None,
                 rate: int = 1000) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(phoneme, start sample) in time order over n samples -> opening and width tracks at `rate` Hz, in [0, 1].
    loudness (same rate, 0..1): the jaw opens with it (opening x loudness)."""
    m = int(np.ceil(n / sr * rate))
    opening, width = np.full(m, VISEMES["rest"][0]), np.full(m, VISEMES["rest"][1])
    starts = [round(s / sr * rate) for _, s in phonemes] + [m]
    for (name, _), a, b in zip(phonemes, starts[:-1], starts[1:], strict=True):
        first, second = shapes_of(name)
        mid = (a + b) // 2 if first != second else b
        for lo, hi, v in ((a, mid, first), (mid, b, second)):
            opening[lo:hi], width[lo:hi] = VISEMES[v]
    sigma = SMOOTH_S * rate
    opening = ndimage.gaussian_filter1d(opening, sigma, mode="nearest")
    width = ndimage.gaussian_filter1d(width, sigma, mode="nearest")
    if loudness is not None:  # a last part-window (n not a whole number of 1/rate s) repeats its neighbour's
        loud = np.clip(loudness[:m], 0.0, 1.0)
        opening = opening * (np.pad(loud, (0, m - len(loud)), mode="edge") if 0 < len(loud) < m else loud)
    return np.clip(opening, 0, 1).astype(np.float32), np.clip(width, 0, 1).astype(np.float32)


def loudness_track(audio: np.ndarray, sr: int, rate: int = 1000) -> np.ndarray:
    """RMS of the voice in 20 ms windows at `rate` Hz, relative to its 95th percentile, in [0, 1]."""
    hop = sr // rate
    frames = len(audio) // hop
    power = (audio[: frames * hop].astype(np.float64) ** 2).reshape(frames, hop).mean(1)
    rms = np.sqrt(np.clip(ndimage.uniform_filter1d(power, max(1, int(0.02 * rate)), mode="nearest"), 0, None))
    top = np.percentile(rms, 95) if frames else 0.0
    return np.clip(rms / top, 0.0, 1.0) if top > 0 else np.zeros(frames)


def per_frame(track: np.ndarray, frames: int, fps: float, rate: int = 1000) -> np.ndarray:
    """Mean of a track over each video frame's span (frame k covers [k - 0.5, k + 0.5) / fps)."""
    edges = np.clip(np.round((np.arange(frames + 1) - 0.5) / fps * rate).astype(int), 0, len(track))
    csum = np.concatenate([[0.0], np.cumsum(track, dtype=np.float64)])
    return ((csum[edges[1:]] - csum[edges[:-1]]) / np.maximum(edges[1:] - edges[:-1], 1)).astype(np.float32)


def vowel_onsets(phonemes: list[tuple[str, float]]) -> list[float]:
    """Start times of the vowels (open, mid, round or spread visemes, but not the glides w and j) of (phoneme, start s)
    events: a talking head's visible events."""
    return [t for name, t in phonemes if viseme_of(name) in ("open", "mid", "round", "spread")
            and name.strip(STRESS) not in ("w", "j")]  # fmt: skip
