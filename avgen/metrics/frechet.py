"""Fréchet distance between two sets of clips, on features of our own autoencoders (no pretrained network needed).

A clip's features: its normalised latents (`ae.normalize(ae.encode(x))`, so every channel has unit scale over the
training data), pooled over time and space by their mean and standard deviation: video (2 * 16), audio (2 * 32) for
the default autoencoders. FD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), as in FID. With few clips the
value is biased upwards: compare it with the FD between two disjoint real sets of the same size.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from avgen.autoencoders.base import Autoencoder
from avgen.data.batch import video_to_model
from avgen.media import AVClip


@torch.no_grad()
def ae_features(
    clips: Sequence[AVClip], video_ae: Autoencoder, audio_ae: Autoencoder, batch: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """(video features (n, 2 * cv), audio features (n, 2 * ca)): mean and std over positions of normalised latents."""
    video, audio = [], []
    for i in range(0, len(clips), batch):
        chunk = clips[i : i + batch]
        v = torch.stack([c.video for c in chunk])  # (b, t, h, w, 3) uint8
        a = torch.stack([c.audio.float() for c in chunk])  # (b, c, n)
        vdev, adev = next(video_ae.parameters()).device, next(audio_ae.parameters()).device
        zv = video_ae.normalize(video_ae.encode(video_to_model(v).to(vdev))).flatten(2)  # (b, cv, t*h*w)
        za = audio_ae.normalize(audio_ae.encode(a.to(adev))).flatten(2)  # (b, ca, m)
        video.append(torch.cat([zv.mean(-1), zv.std(-1)], 1).float().cpu())
        audio.append(torch.cat([za.mean(-1), za.std(-1)], 1).float().cpu())
    return torch.cat(video).numpy().astype(np.float64), torch.cat(audio).numpy().astype(np.float64)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FD between Gaussians fitted to feature sets a (n, d) and b (m, d); n, m >= 2.

    tr((S_a S_b)^(1/2)) is computed as tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), a symmetric PSD square root, which stays
    real and stable when the covariances are singular (fewer clips than features).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"frechet_distance needs two (n >= 2, d) feature sets, got {a.shape} and {b.shape}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False).reshape(a.shape[1], -1), np.cov(b, rowvar=False).reshape(b.shape[1], -1)
    root_a = _sqrt_psd(s_a)
    cross = np.trace(_sqrt_psd(root_a @ s_b @ root_a))
    return float(max(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross, 0.0))


def fd_scores(
    sets: dict[str, Sequence[AVClip]], reference: Sequence[AVClip], video_ae: Autoencoder, audio_ae: Autoencoder
) -> dict[str, dict]:
    """{set name: {"FD video", "FD audio", "FD joint"}} against the reference clips; joint = both feature vectors side
    by side, so it also sees how sound and picture go together (an audio-shuffled set moves only the joint FD)."""
    rv, ra = ae_features(reference, video_ae, audio_ae)
    out = {}
    for name, clips in sets.items():
        v, a = ae_features(clips, video_ae, audio_ae)
        out[name] = {
            "FD video (AE features)": frechet_distance(v, rv),
            "FD audio (AE features)": frechet_distance(a, ra),
            "FD joint (AE features)": frechet_distance(np.hstack([v, a]), np.hstack([rv, ra])),
        }
    return out
