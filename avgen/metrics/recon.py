"""Reconstruction metrics for autoencoders: PSNR and SSIM on uint8 frames, SI-SDR and onset recall on audio."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from avgen.metrics.onsets import detect_onsets


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of uint8 videos (T, H, W, 3)."""
    mse = (a.float() - b.float()).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM over frames and channels of uint8 videos (T, H, W, 3), 7x7 Gaussian window (sigma 1.5)."""
    x = a.float().permute(0, 3, 1, 2) / 255.0  # (t, 3, h, w)
    y = b.float().permute(0, 3, 1, 2) / 255.0
    g = torch.exp(-((torch.arange(7) - 3.0) ** 2) / (2 * 1.5**2))
    w = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, 7, 7)
    blur = lambda z: F.conv2d(z, w, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Scale-invariant SDR in dB of mono-mixed signals (C, N)."""
    r = reference.double().mean(0)
    e = estimate.double().mean(0)
    r, e = r - r.mean(), e - e.mean()
    target = (e @ r) / (r @ r + 1e-12) * r
    noise = e - target
    return float(10 * torch.log10((target @ target + 1e-12) / (noise @ noise + 1e-12)))


def onset_recall(reference: torch.Tensor, estimate: torch.Tensor, sr: int, tolerance: float = 0.010) -> float:
    """Share of the reference's onsets that the estimate has within `tolerance` seconds (1.0 when none)."""
    ref = detect_onsets(reference, sr)
    if len(ref) == 0:
        return 1.0
    est = detect_onsets(estimate, sr)
    if len(est) == 0:
        return 0.0
    return float(np.mean([np.min(np.abs(est - t)) <= tolerance for t in ref]))
