"""Pictures of clips: a strip of frames above a log-mel spectrogram on the same time axis (Pillow only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchaudio
from PIL import Image, ImageDraw

from avgen.media import AVClip

# a perceptually ordered dark-to-bright colour map (magma-like), interpolated from a few anchors
_ANCHORS = np.array(
    [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39]]
    + [[252, 255, 164]],
    dtype=np.float32,
)


def colormap(x: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB."""
    pos = np.clip(x, 0, 1) * (len(_ANCHORS) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_ANCHORS) - 2)
    frac = (pos - lo)[..., None]
    return (_ANCHORS[lo] * (1 - frac) + _ANCHORS[lo + 1] * frac).astype(np.uint8)


def log_mel_image(audio: torch.Tensor, sample_rate: int, width: int, height: int = 96) -> Image.Image:
    """Log-mel spectrogram of the mean of the channels, low frequencies at the bottom, `width` x `height` pixels."""
    mono = audio.float().mean(0)
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate, n_fft=1024, hop_length=max(1, sample_rate // 200), n_mels=64, power=1.0
    )(mono)
    db = 20 * torch.log10(mel.clamp_min(1e-5))
    db = (db - (db.max() - 70)).clamp_min(0) / 70  # 70 dB of range
    img = colormap(db.flip(0).numpy())
    return Image.fromarray(img).resize((width, height), Image.BILINEAR)


def frame_strip(video: torch.Tensor, count: int, height: int) -> Image.Image:
    """`count` frames evenly spread over the clip, side by side, each `height` pixels tall."""
    t, h, w, _ = video.shape
    idx = np.linspace(0, t - 1, count).round().astype(int)
    tile_w = round(w * height / h)
    strip = Image.new("RGB", (tile_w * count, height))
    for k, i in enumerate(idx):
        strip.paste(Image.fromarray(video[i].numpy()).resize((tile_w, height), Image.NEAREST), (k * tile_w, 0))
    return strip


def clip_panel(clip: AVClip, frames: int = 8, height: int = 96, title: str | None = None) -> Image.Image:
    """Frames above the spectrogram of one clip, with an optional title line."""
    strip = frame_strip(clip.video, frames, height) if clip.video.shape[0] else None
    width = strip.width if strip else 768
    spec = log_mel_image(clip.audio, clip.sample_rate, width)
    text = title if title is not None else (clip.caption or "")
    head = 16 if text else 0
    panel = Image.new("RGB", (width, head + (strip.height if strip else 0) + spec.height), "white")
    if text:
        ImageDraw.Draw(panel).text((4, 2), text[:140], fill=(0, 0, 0))
    if strip:
        panel.paste(strip, (0, head))
    panel.paste(spec, (0, head + (strip.height if strip else 0)))
    return panel


def clip_figure(
    clips: Sequence[AVClip], path: str | Path, frames: int = 8, titles: Sequence[str] | None = None, columns: int = 1
) -> Path:
    """Write a PNG with one panel per clip (frames + spectrogram), `columns` panels per row."""
    panels = [clip_panel(c, frames, title=None if titles is None else titles[i]) for i, c in enumerate(clips)]
    rows = (len(panels) + columns - 1) // columns
    pw = max(p.width for p in panels)
    ph = max(p.height for p in panels)
    sheet = Image.new("RGB", (columns * pw + (columns - 1) * 8, rows * ph + (rows - 1) * 8), "white")
    for i, p in enumerate(panels):
        sheet.paste(p, ((i % columns) * (pw + 8), (i // columns) * (ph + 8)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
