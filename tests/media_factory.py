"""Media files with known content for tests: flashes at known frames, clicks at known samples."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from avgen.media import AVClip


def flash_click_clip(
    duration: float = 2.0, fps: float = 16, sr: int = 16000, size: int = 32, channels: int = 1, events=(0.3125, 1.0625)
) -> AVClip:
    """White frames and audio clicks at the same event times (times on frame boundaries)."""
    t, n = round(duration * fps), round(duration * sr)
    video = torch.full((t, size, size, 3), 20, dtype=torch.uint8)
    audio = torch.zeros(channels, n)
    for e in events:
        video[round(e * fps)] = 235
        s = round(e * sr)
        audio[:, s : s + int(0.004 * sr)] = 0.8
    return AVClip(video, audio, fps, sr, meta={"events": list(events)})


def flash_frames(video: torch.Tensor) -> list[int]:
    lum = video.float().mean(dim=(1, 2, 3))
    return (lum > 128).nonzero().flatten().tolist()


def click_onsets(audio: torch.Tensor, sr: int, threshold: float = 0.3) -> list[float]:
    """Times (s) where |audio| first rises above threshold after >= 50 ms below it."""
    hot = (audio.abs().max(0).values > threshold).nonzero().flatten().tolist()
    onsets, last = [], -(10**9)
    for s in hot:
        if s - last > 0.05 * sr:
            onsets.append(s / sr)
        last = s
    return onsets


def write_custom(
    path: Path,
    clip: AVClip,
    vcodec: str = "libx264",
    acodec: str | None = "aac",
    fmt: str | None = None,
    time_base: Fraction | None = None,
    audio_delay: float = 0.0,
    audio_layout: str | None = None,
    pix_fmt: str = "yuv420p",
) -> Path:
    """Write a clip with chosen codecs, video time base and an audio start offset (audio pts shifted by delay)."""
    fps = Fraction(clip.fps).limit_denominator(1001)
    audio = clip.audio.numpy()
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream(vcodec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = clip.video.shape[2], clip.video.shape[1], pix_fmt
        tb = time_base or Fraction(1) / fps
        vs.codec_context.time_base = tb
        vs.time_base = tb
        aus = None
        if acodec:
            layout = audio_layout or ("mono" if audio.shape[0] == 1 else "stereo")
            aus = out.add_stream(acodec, rate=clip.sample_rate, layout=layout)
        for i, frame in enumerate(clip.video.numpy()):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = round(Fraction(i) / fps / tb)
            vf.time_base = tb
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
        if aus is not None:
            fmt_name = aus.codec_context.format.name
            conv = av.AudioResampler(format=fmt_name, layout=aus.layout.name, rate=clip.sample_rate)
            step = 960 if acodec == "libopus" else 1024
            delay = round(audio_delay * clip.sample_rate)
            for lo in range(0, audio.shape[1], step):
                chunk = np.ascontiguousarray(audio[:, lo : lo + step])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=aus.layout.name)
                if fmt_name != "fltp":
                    af.sample_rate = clip.sample_rate
                    af = conv.resample(af)[0]
                af.sample_rate, af.pts = clip.sample_rate, lo + delay
                out.mux(aus.encode(af))
            out.mux(aus.encode(None))
    return path
