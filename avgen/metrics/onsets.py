"""Audio onsets, training-free: spectral flux on a log-magnitude STFT with a 2 ms hop, peaks refined on the energy rise.

Used by the sync metrics (A/V offset, AV-Align) and by the autoencoder evaluation (onset recall within 10 ms), so
onset *times* are precise to a few milliseconds.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import maximum_filter1d, median_filter

HOP_S = 0.002  # 2 ms between flux values


def mono(audio: torch.Tensor | np.ndarray) -> np.ndarray:
    a = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    return (a.mean(0) if a.ndim == 2 else a).astype(np.float32)


def onset_strength(audio: torch.Tensor | np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Spectral flux (half-wave rectified rise of log magnitude, summed over frequency).

    Returns (flux (m,), rate in values per second). Value j describes the rise into the window centred at j * hop.
    """
    x = torch.from_numpy(mono(audio))
    hop = max(1, round(HOP_S * sr))
    n_fft = 1 << int(np.ceil(np.log2(0.016 * sr)))  # ~16 ms window
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), center=True, return_complex=True).abs()
    # per-bin noise floor (the median over time: events are sparse) so background noise does not count as onsets
    floor = 3.0 * spec.median(dim=1, keepdim=True).values + 1e-3 * spec.max() + 1e-8  # (f, 1)
    logmag = torch.log(torch.maximum(spec, floor) / floor)  # (f, m), 0 at or below the floor
    rise = (logmag[:, 1:] - logmag[:, :-1]).clamp_min(0).sum(0)
    flux = torch.cat([rise[:1] * 0, rise]).numpy()
    return flux.astype(np.float32), sr / hop


def energy_envelope(audio: torch.Tensor | np.ndarray, sr: int, hop_s: float = 0.001) -> tuple[np.ndarray, float]:
    """RMS in non-overlapping windows of hop_s; returns (envelope, rate)."""
    x = mono(audio)
    hop = max(1, round(hop_s * sr))
    m = len(x) // hop
    env = np.sqrt((x[: m * hop].reshape(m, hop) ** 2).mean(1) + 1e-12)
    return env, sr / hop


def detect_onsets(
    audio: torch.Tensor | np.ndarray, sr: int, min_gap: float = 0.05, sensitivity: float = 0.1
) -> np.ndarray:
    """Onset times in seconds (sorted).

    A flux peak counts when it is the maximum within +-min_gap/2 and rises above a running median by `sensitivity`
    times the clip's largest flux; its time is then refined to where the 1 ms energy envelope first climbs past 20 %
    of the way from the preceding minimum to the following maximum.
    """
    flux, rate = onset_strength(audio, sr)
    if flux.max() <= 1e-6:
        return np.zeros(0)
    width = max(3, int(min_gap * rate) | 1)
    local_max = maximum_filter1d(flux, size=width) == flux
    baseline = median_filter(flux, size=max(3, int(0.2 * rate) | 1))
    peaks = np.flatnonzero(local_max & (flux > baseline + sensitivity * flux.max()))
    env, erate = energy_envelope(audio, sr)
    times = []
    for p in peaks:
        t = p / rate
        lo, hi = max(0, int((t - 0.02) * erate)), min(len(env), int((t + 0.015) * erate) + 1)
        if hi - lo < 3:
            times.append(t)
            continue
        seg = env[lo:hi]
        i_max = int(seg.argmax())
        floor = seg[: i_max + 1].min()
        above = np.flatnonzero(seg[: i_max + 1] >= floor + 0.2 * (seg[i_max] - floor))
        times.append((lo + (above[0] if len(above) else i_max)) / erate)
    times = np.array(sorted(times))
    if len(times) > 1:  # merge refinements that collapsed onto one another
        keep = np.concatenate([[True], np.diff(times) >= min_gap / 2])
        times = times[keep]
    return times


def onset_envelope(audio: torch.Tensor | np.ndarray, sr: int, rate: float) -> np.ndarray:
    """Flux pooled (max) into bins of 1/rate seconds centred at i / rate, for cross-correlation with video signals."""
    flux, frate = onset_strength(audio, sr)
    n_bins = int(round(len(mono(audio)) / sr * rate))
    edges = np.clip(np.round((np.arange(n_bins + 1) - 0.5) / rate * frate).astype(int), 0, len(flux))
    out = np.zeros(n_bins, np.float32)
    for i in range(n_bins):
        if edges[i + 1] > edges[i]:
            out[i] = flux[edges[i] : edges[i + 1]].max()
    return out


def match_events(found: np.ndarray | list, true: np.ndarray | list, tol: float) -> tuple[float, float]:
    """(share of found times within tol of a true one, share of true times with a found one within tol); nan for a
    share of nothing (no found times: precision nan; no true times: recall 1 when nothing was found, else 0)."""
    f, t = np.asarray(found, float), np.asarray(true, float)
    precision = float(np.mean([np.abs(t - x).min() <= tol for x in f])) if len(f) and len(t) else float("nan")
    recall = float(np.mean([np.abs(f - x).min() <= tol for x in t])) if len(f) and len(t) else float(len(t) == 0)
    return precision, recall
