"""Training-free audio-video sync metrics. They read only `clip.video` and `clip.audio`, never `clip.meta`.

- `estimate_offset`: lag of the audio against the video from cross-correlating an audio onset envelope with a video
  "event" envelope (motion changes + brightness changes); positive means the audio lags the video.
- `av_align`: AV-Align (Yariv et al. 2023): audio onset peaks vs optical-flow magnitude peaks, matched within +-1
  frame, intersection over union.
- `mouth_sync`: correlation of mouth movement measured from pixels with the audio envelope (talking heads).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from avgen.media import AVClip
from avgen.metrics.onsets import detect_onsets, energy_envelope, onset_envelope

UPSAMPLE = 4  # correlation resolution: a quarter of a frame
MAX_OFFSET = 0.5  # s: the offset search range; an offset below MIN_CONFIDENCE counts as this much error
MIN_CONFIDENCE = 0.15  # real avworld clips: 23 % below it; audio-shuffled: 60 % (validation and tools/evaluate.py)


def grey_frames(video: torch.Tensor, max_side: int = 128) -> np.ndarray:
    """uint8 (T, H, W, 3) -> float32 (T, h, w) luminance in [0, 1], downscaled so the longer side <= max_side."""
    v = video.detach().cpu().numpy()
    g = (0.299 * v[..., 0] + 0.587 * v[..., 1] + 0.114 * v[..., 2]).astype(np.float32) / 255.0
    t, h, w = g.shape
    f = max(1, int(np.ceil(max(h, w) / max_side)))
    if f > 1:
        g = g[:, : h // f * f, : w // f * f].reshape(t, h // f, f, w // f, f).mean((2, 4))
    return g


def optical_flow(grey: np.ndarray) -> np.ndarray:
    """Farneback flow between consecutive frames; (T-1, h, w, 2) in pixels per frame."""
    frames = (np.clip(grey, 0, 1) * 255).astype(np.uint8)
    flows = [
        cv2.calcOpticalFlowFarneback(frames[i], frames[i + 1], None, 0.5, 3, 9, 3, 5, 1.1, 0)
        for i in range(len(frames) - 1)
    ]
    return np.stack(flows) if flows else np.zeros((0, *grey.shape[1:], 2), np.float32)


def video_event_envelope(video: torch.Tensor, fps: float) -> tuple[np.ndarray, float]:
    """Where something starts to happen in the video, at UPSAMPLE x fps.

    Two cues, each normalised: the change of optical flow between consecutive frame pairs (acceleration: bounces,
    starts and stops) and the rise of frame-difference energy (lights switching on, a mouth starting to open).
    Value at frame k describes the change across frame k's neighbourhood; returns (envelope, rate).
    """
    t = video.shape[0]
    rate = fps * UPSAMPLE
    if t < 3:
        return np.zeros(t * UPSAMPLE, np.float32), rate
    g = grey_frames(video)
    flow = optical_flow(g)  # flow[i]: frame i -> i+1, centred at (i + 0.5) / fps
    accel = np.abs(flow[1:] - flow[:-1]).sum(-1).mean((1, 2))  # centred at (i + 1) / fps
    diff = np.abs(g[1:] - g[:-1]).mean((1, 2))  # centred at (i + 0.5) / fps
    rise = np.clip(diff - np.concatenate([[0.0], diff[:-1]]), 0, None)  # change into pair i, at (i + 0.5) / fps
    grid = np.arange(t * UPSAMPLE) / rate
    a = np.interp(grid, (np.arange(len(accel)) + 1) / fps, _unit(accel), left=0, right=0)
    r = np.interp(grid, (np.arange(len(rise)) + 0.5) / fps, _unit(rise), left=0, right=0)
    return (a + r).astype(np.float32), rate


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    x = x - np.median(x) if len(x) else x
    x = np.clip(x, 0, None)
    return x / (x.max() + 1e-12)


def offset_error(clip: AVClip) -> tuple[float, bool]:
    """(|offset| in seconds, trusted): an offset found with confidence below MIN_CONFIDENCE counts as MAX_OFFSET,
    the search limit, as validation and tools/evaluate.py both score it."""
    offset, confidence = estimate_offset(clip, MAX_OFFSET)
    trusted = confidence >= MIN_CONFIDENCE
    return (abs(offset) if trusted else MAX_OFFSET), trusted


def estimate_offset(clip: AVClip, max_offset: float = MAX_OFFSET) -> tuple[float, float]:
    """(offset in seconds, confidence in [0, 1]); positive = the audio lags the video.

    The lag maximising the normalised cross-correlation of the audio onset envelope and the video event envelope,
    refined by a parabola through the peak. Confidence is the peak correlation, discounted by how close the best
    competing peak (more than a frame away) comes to it.
    """
    v, rate = video_event_envelope(clip.video, clip.fps)
    a = onset_envelope(clip.audio, clip.sample_rate, rate)
    n = min(len(a), len(v))
    a, v = a[:n] - a[:n].mean(), v[:n] - v[:n].mean()
    if n < 4 or a.std() < 1e-9 or v.std() < 1e-9:
        return 0.0, 0.0
    max_lag = min(int(round(max_offset * rate)), n - 2)
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.array([_corr_at(a, v, lag) for lag in lags])
    best = int(corr.argmax())
    shift = 0.0
    if 0 < best < len(corr) - 1:
        y0, y1, y2 = corr[best - 1 : best + 2]
        denom = y0 - 2 * y1 + y2
        shift = float(np.clip(0.5 * (y0 - y2) / denom, -0.5, 0.5)) if abs(denom) > 1e-12 else 0.0
    far = np.abs(lags - lags[best]) > UPSAMPLE
    second = corr[far].max() if far.any() else 0.0
    peak = max(float(corr[best]), 0.0)
    confidence = peak * float(np.clip(1.0 - max(second, 0.0) / (peak + 1e-12), 0.0, 1.0)) ** 0.5
    return float((lags[best] + shift) / rate), float(np.clip(confidence, 0.0, 1.0))


def _corr_at(a: np.ndarray, v: np.ndarray, lag: int) -> float:
    """Pearson correlation of v(t) with a(t + lag) over their overlap."""
    if lag >= 0:
        x, y = v[: len(v) - lag], a[lag:]
    else:
        x, y = v[-lag:], a[: len(a) + lag]
    if len(x) < 3 or x.std() < 1e-12 or y.std() < 1e-12:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def av_align(clip: AVClip) -> float:
    """AV-Align: |matched| / (|audio peaks| + |video peaks| - |matched|), peaks matched within +-1 frame.

    Audio peaks: onsets. Video peaks: local maxima of the mean optical-flow magnitude between consecutive frames
    (Farneback), as in the reference; a peak must stand above the clip's median flow to count.
    """
    t = clip.video.shape[0]
    if t < 3:
        return 0.0
    audio_times = detect_onsets(clip.audio, clip.sample_rate)
    mag = np.linalg.norm(optical_flow(grey_frames(clip.video)), axis=-1).mean((1, 2))  # (T-1,)
    padded = np.concatenate([[-np.inf], mag, [-np.inf]])
    is_peak = (mag > padded[:-2]) & (mag >= padded[2:]) & (mag > np.median(mag) + 1e-3)
    video_frames = np.flatnonzero(is_peak)  # flow i -> i+1 belongs to frame i
    audio_frames = np.round(np.asarray(audio_times) * clip.fps).astype(int)
    if len(audio_frames) == 0 and len(video_frames) == 0:
        return 0.0
    matched_audio = sum(bool(np.any(np.abs(video_frames - f) <= 1)) for f in audio_frames)
    matched_video = sum(bool(np.any(np.abs(audio_frames - f) <= 1)) for f in video_frames)
    matches = (matched_audio + matched_video) / 2
    return float(matches / (len(audio_frames) + len(video_frames) - matches))


def mouth_movement(video: torch.Tensor) -> np.ndarray:
    """Per-frame mouth openness proxy: how dark the region that moves most is (an open mouth shows the dark cavity).

    The region is the top 2 % of pixels by temporal standard deviation (in a talking head, the mouth). The signed
    darkness follows the opening both ways; a deviation from the clip's median frame (the earlier proxy) folds over
    when the mouth rests half open, so a closing and an opening mouth read the same (measured on avworld's
    phoneme-driven mouths: 0.84 mouth_sync with the deviation, 0.91 with darkness; 0.95 with both on version 1).
    """
    g = grey_frames(video)
    std = g.std(0)
    k = max(4, int(0.02 * std.size))
    region = np.argsort(std.ravel())[-k:]
    return -g.reshape(len(g), -1)[:, region].mean(1)


def mouth_sync(clip: AVClip) -> float:
    """Pearson correlation in [-1, 1] of mouth movement (pixels) with the audio RMS envelope at frame times."""
    t = clip.video.shape[0]
    if t < 3:
        return 0.0
    mouth = mouth_movement(clip.video)
    env, rate = energy_envelope(clip.audio, clip.sample_rate, hop_s=0.005)
    edges = np.clip(np.round((np.arange(t + 1) - 0.5) / clip.fps * rate).astype(int), 0, len(env))
    rms = np.array([env[edges[i] : max(edges[i + 1], edges[i] + 1)].mean() for i in range(t)])
    if mouth.std() < 1e-6 or rms.std() < 1e-12:  # a still mouth: its float32 means wobble by ~1e-9, not 0
        return 0.0
    return float(np.corrcoef(mouth, rms)[0, 1])
