"""Reconstruction metrics for autoencoders: PSNR and SSIM on uint8 frames, per-object colour and contrast (given the
object's coverage, for evaluation), SI-SDR, energy kept per band and onset recall on audio."""

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


def band_energy_kept(reference: torch.Tensor, estimate: torch.Tensor, sr: int, low: float,
                     high: float | None = None) -> float:  # fmt: skip
    """Energy of the estimate over the reference's between `low` and `high` Hz (default: Nyquist), in dB, from
    mono-mixed spectra (C, N): 0 when the band is kept, -20 when it is 10x quieter (a low-pass round trip erases
    pings and the formants of speech above ~1 kHz); nan when the band holds under 1e-9 of the reference's energy."""
    return bands_energy_kept(reference, estimate, sr, [(low, high)])[0]


def bands_energy_kept(reference: torch.Tensor, estimate: torch.Tensor, sr: int,
                      bands: list[tuple[float, float | None]]) -> list[float]:  # fmt: skip
    """band_energy_kept for several (low, high) bands from one pair of spectra."""
    r, e = (torch.fft.rfft(x.double().mean(0)).abs().pow(2) for x in (reference, estimate))
    f = torch.fft.rfftfreq(reference.shape[-1], 1 / sr)
    total, out = float(r.sum()), []
    for low, high in bands:
        band = (f >= low) & (f < (high or sr / 2 + 1))
        ref, est = float(r[band].sum()), float(e[band].sum())
        out.append(float("nan") if ref <= 1e-9 * total else 10 * float(np.log10(max(est, 1e-12) / ref)))
    return out


def onset_recall(reference: torch.Tensor, estimate: torch.Tensor, sr: int, tolerance: float = 0.010) -> float:
    """Share of the reference's onsets that the estimate has within `tolerance` seconds (1.0 when none)."""
    ref = detect_onsets(reference, sr)
    if len(ref) == 0:
        return 1.0
    est = detect_onsets(estimate, sr)
    if len(est) == 0:
        return 0.0
    return float(np.mean([np.min(np.abs(est - t)) <= tolerance for t in ref]))


def object_fidelity(real: torch.Tensor, decoded: torch.Tensor, coverage: np.ndarray) -> dict[str, float]:
    """How one object survives a round trip, given its visible coverage (t, h, w) in [0, 1] (for evaluation: the
    world's masks): the mean per-pixel RGB error inside it (0..1 scale), and its contrast against the ring of
    background around it, decoded over real (1: kept; 0: it melted into the background). Frames where it covers
    fewer than 4 pixels are skipped."""
    from scipy import ndimage

    r = np.asarray(real, dtype=np.float32) / 255.0  # (t, h, w, 3)
    d = np.asarray(decoded, dtype=np.float32) / 255.0
    inside = coverage > 0.5
    errors, contrasts = [], []
    for k in range(len(inside)):
        if inside[k].sum() < 4:
            continue
        ring = ndimage.binary_dilation(inside[k], iterations=3) & (coverage[k] < 0.05)
        if ring.sum() < 4:
            continue
        errors.append(np.abs(r[k][inside[k]] - d[k][inside[k]]).mean())  # per pixel, mean over RGB
        real_c = np.linalg.norm(r[k][inside[k]].mean(0) - r[k][ring].mean(0))
        dec_c = np.linalg.norm(d[k][inside[k]].mean(0) - d[k][ring].mean(0))
        if real_c > 0.05:
            contrasts.append(dec_c / real_c)
    return {"colour error": float(np.mean(errors)) if errors else float("nan"),
            "contrast kept": float(np.mean(contrasts)) if contrasts else float("nan")}  # fmt: skip
