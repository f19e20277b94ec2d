"""Metrics with exact expected values on synthetic signals: AV-Align's matching and IoU, PSNR, SSIM, SI-SDR and
onset recall. The sync tests elsewhere compare real and shuffled pairs; these pin the formulas down."""

from __future__ import annotations

import math

import pytest
import torch

from avgen.media import AVClip
from avgen.metrics import av_align
from avgen.metrics.recon import band_energy_kept, onset_recall, psnr, si_sdr, ssim

FPS, SR = 16, 16000


def jumps_and_clicks(jump_frames=(6, 18), click_frames=(6, 18), t: int = 32) -> AVClip:
    """A bright square that moves 3 px only between frame k and k + 1 for k in jump_frames (an optical-flow peak at
    frame k), and 4 ms clicks at the start of each frame in click_frames."""
    video = torch.full((t, 64, 64, 3), 30, dtype=torch.uint8)
    x = 10
    for f in range(t):
        video[f, 24:40, x : x + 16] = 220
        x += 3 if f in jump_frames else 0
    audio = torch.zeros(1, round(t / FPS * SR))
    for f in click_frames:
        s = round(f / FPS * SR)
        audio[:, s : s + 64] = 0.8
    return AVClip(video, audio, FPS, SR)


def test_av_align_exact_values_on_synthetic_peaks():
    assert av_align(jumps_and_clicks()) == 1.0  # every flow peak has its click on the same frame
    assert av_align(jumps_and_clicks(click_frames=(7, 17))) == 1.0  # within +-1 frame still matches
    assert av_align(jumps_and_clicks(click_frames=(9, 21))) == 0.0  # 3 frames late: nothing matches
    # 2 video peaks, 3 clicks, one pair within a frame: IoU = 1 / (2 + 3 - 1), not a one-sided recall
    assert av_align(jumps_and_clicks(click_frames=(6, 12, 26))) == pytest.approx(1 / 4)
    # extra unmatched video peaks lower the score as much as unmatched clicks do
    assert av_align(jumps_and_clicks(jump_frames=(6, 12, 26), click_frames=(6,))) == pytest.approx(1 / 3)


def test_av_align_is_zero_for_a_still_video_with_or_without_sound():
    still = jumps_and_clicks(jump_frames=())
    assert av_align(still) == 0.0
    assert av_align(AVClip(still.video, torch.zeros_like(still.audio), FPS, SR)) == 0.0


def test_psnr_and_ssim_exact_values():
    a = torch.zeros(2, 16, 16, 3, dtype=torch.uint8)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 10) == pytest.approx(10 * math.log10(255**2 / 100))  # MSE 100
    # constant frames: variances vanish and SSIM is its luminance term (2 mx my + c1) / (mx^2 + my^2 + c1)
    mx, my, c1 = 128 / 255, 64 / 255, 0.01**2
    assert ssim(a + 128, a + 64) == pytest.approx((2 * mx * my + c1) / (mx**2 + my**2 + c1), rel=1e-4)
    noise = torch.randint(0, 256, a.shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert ssim(noise, noise) == pytest.approx(1.0, abs=1e-6) and ssim(noise, a + 128) < 0.1


def test_si_sdr_exact_values_and_scale_invariance():
    n = torch.arange(16000, dtype=torch.float64)
    ref = torch.sin(2 * math.pi * 5 * n / 16000)[None]
    orth = torch.sin(2 * math.pi * 11 * n / 16000)[None]  # orthogonal to ref over whole periods, zero mean
    assert si_sdr(ref, ref + 0.1 * orth) == pytest.approx(20.0, abs=1e-6)  # 10 log10(1 / 0.1^2)
    assert si_sdr(ref, 0.25 * (ref + 0.1 * orth)) == pytest.approx(20.0, abs=1e-6)  # the estimate's gain is free
    assert si_sdr(ref, ref + orth) == pytest.approx(0.0, abs=1e-6)


def test_band_energy_kept_exact_values():
    """A 300 Hz + 2.1 kHz pair of tones: the 2.1 kHz one at a tenth of its amplitude reads -20 dB above 1 kHz and
    0 dB below; a band the reference lacks is nan."""
    t = torch.arange(16000) / 16000
    low, high = torch.sin(2 * torch.pi * 300 * t), torch.sin(2 * torch.pi * 2100 * t)
    ref, est = (low + high)[None], (low + 0.1 * high)[None]  # (1, n)
    assert band_energy_kept(ref, est, 16000, 1000) == pytest.approx(-20.0, abs=1e-3)
    assert band_energy_kept(ref, est, 16000, 0, 1000) == pytest.approx(0.0, abs=1e-3)
    assert math.isnan(band_energy_kept(low[None], est, 16000, 4000))


def test_onset_recall_exact_values():
    clicks = jumps_and_clicks(click_frames=(4, 12, 20, 28)).audio
    two = jumps_and_clicks(click_frames=(4, 20)).audio
    late = torch.cat([torch.zeros(1, 320), clicks[:, :-320]], 1)  # 20 ms late
    assert onset_recall(clicks, clicks, SR) == 1.0
    assert onset_recall(clicks, two, SR) == 0.5
    assert onset_recall(clicks, late, SR) == 0.0 and onset_recall(clicks, late, SR, tolerance=0.025) == 1.0
    assert onset_recall(torch.zeros_like(clicks), clicks, SR) == 1.0  # nothing to recall
