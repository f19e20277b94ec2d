"""Sound synthesis for the avworld: impacts and beeps (speech: avgen/data/avworld/speech.py). All mono float32 at `sr`.

Sounds are placed at exact sample positions, so an event at t seconds starts at sample round(t * sr).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

# shape -> (partials as multiples of the base frequency, their decay times in s, base frequency in Hz, noise share)
IMPACTS = {
    "circle": ((1.0, 2.3, 4.1), (0.045, 0.025, 0.015), 260.0, 0.5),  # wooden knock: low, short, noisy
    "square": ((1.0, 1.58, 2.37, 3.12), (0.30, 0.22, 0.16, 0.12), 620.0, 0.05),  # metal: inharmonic, ringing
    "triangle": ((1.0, 2.76), (0.20, 0.09), 2100.0, 0.02),  # glass: high, pure
}


def impact(shape: str, size_scale: float, strength: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One impact sound; larger objects sound lower. Starts with a sharp attack at sample 0."""
    partials, decays, base, noise_share = IMPACTS[shape]
    f0 = base / size_scale * rng.uniform(0.95, 1.05)
    n = int(sr * max(decays) * 5)
    t = np.arange(n, dtype=np.float32) / sr
    out = np.zeros(n, np.float32)
    for k, (mult, tau) in enumerate(zip(partials, decays, strict=True)):
        f = f0 * mult
        if f < sr / 2 * 0.95:
            out += np.sin(2 * np.pi * f * t, dtype=np.float32) * np.exp(-t / tau, dtype=np.float32) / (1 + k)
    if noise_share > 0:
        noise = rng.standard_normal(n).astype(np.float32) * np.exp(-t / 0.006, dtype=np.float32)
        out = (1 - noise_share) * out / (np.abs(out).max() + 1e-8) + noise_share * noise / 3.0
    attack = np.minimum(1.0, np.arange(n, dtype=np.float32) / max(1, int(0.001 * sr)))
    return (out * attack * strength / (np.abs(out).max() + 1e-8)).astype(np.float32)


def resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    """Two-pole resonator (a formant) with unit gain near its peak."""
    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * freq / sr
    a = [1.0, -2 * r * np.cos(theta), r * r]
    b = [(1 - r) * np.sqrt(1 - 2 * r * np.cos(2 * theta) + r * r)]
    return lfilter(b, a, x).astype(np.float32)


def bandpass_noise(n: int, lo: float, hi: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """White noise shaped into [lo, hi] Hz by a resonator at the band's centre."""
    centre = min(0.5 * (lo + hi), 0.45 * sr)
    return resonator(rng.standard_normal(n).astype(np.float32), centre, max(hi - lo, 200.0), sr)


def envelope(n: int, attack: int, release: int) -> np.ndarray:
    """Linear attack, flat, linear release; (n,)."""
    env = np.ones(n, np.float32)
    a, r = min(attack, n // 2), min(release, n // 2)
    if a:
        env[:a] = np.linspace(0.0, 1.0, a, endpoint=False, dtype=np.float32)
    if r:
        env[n - r :] = np.linspace(1.0, 0.0, r, dtype=np.float32)
    return env


def beep(duration: float, freq: float, sr: int) -> np.ndarray:
    """A tone with 5 ms fades, as long as the lamp is lit."""
    n = int(duration * sr)
    t = np.arange(n, dtype=np.float32) / sr
    tone = np.sin(2 * np.pi * freq * t) + 0.25 * np.sin(2 * np.pi * 2 * freq * t)
    return (tone * envelope(n, int(0.003 * sr), int(0.005 * sr)) / 1.25).astype(np.float32)


def place(track: np.ndarray, sound: np.ndarray, start: int) -> None:
    """Add `sound` into `track` (C, N) or (N,) from sample `start`, cropping at the end, in place."""
    if start >= track.shape[-1] or start + len(sound) <= 0:
        return
    lo = max(0, start)
    hi = min(track.shape[-1], start + len(sound))
    track[..., lo:hi] += sound[lo - start : hi - start]
