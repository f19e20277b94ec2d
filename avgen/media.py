"""Media at the boundary: `AVClip`, and reading / writing clips with exact audio-video sync.

One clock: time zero of a file is the earliest start time of its streams (as PyAV reports them, so AAC priming and
edit lists are already accounted for); a video frame shown at time t and an audio sample at time t come back at the
same position of the returned clip. Video is resampled to the target fps by timestamp (frame k shows the source
frame on screen at start + k / fps), audio by libswresample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio

from avgen._atomic import atomic_path

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".ogv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg"}


class MediaError(ValueError):
    """A media file that cannot be read or written as asked; the message names the file and what to change."""


@dataclass
class AVClip:
    """A clip with synchronized sound.

    video: uint8 (T, H, W, 3); audio: float32 (C, N) in [-1, 1]; both start at time 0 on one clock.
    meta holds ground truth for datasets (never read by metrics).
    """

    video: torch.Tensor
    audio: torch.Tensor
    fps: float
    sample_rate: int
    caption: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.video.shape[0] / self.fps if self.video.shape[0] else self.audio.shape[-1] / self.sample_rate

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
        return write_clip(self, path, metadata=metadata)


# ----------------------------------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------------------------------
def read_clip(
    path: str | Path,
    fps: float | None = None,
    sample_rate: int | None = None,
    start: float = 0.0,
    duration: float | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    missing_audio: str = "error",
) -> AVClip:
    """Read a window of a media file: exactly round(duration*fps) frames and round(duration*sr) samples.

    fps / sample_rate / channels None keep the file's own; duration None reads to the end; size=(H, W) scales to
    cover and centre-crops. missing_audio="silence" gives a silent track for files without audio (else MediaError).
    Audio-only files (wav, flac, ogg, mp3) give a clip with zero frames.
    """
    path = Path(path)
    if missing_audio not in ("error", "silence"):
        raise ValueError(f"missing_audio must be 'error' or 'silence', got {missing_audio!r}")
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty (0 bytes)")
    if start < 0 or (duration is not None and duration <= 0):
        raise MediaError(f"{path}: start must be >= 0 and duration > 0 (got start={start}, duration={duration})")
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return _read_audio_file(path, sample_rate, start, duration, channels, fps)
    try:
        return _read_container(path, fps, sample_rate, start, duration, size, channels, missing_audio)
    except MediaError:
        raise
    except (av.error.FFmpegError, OSError, ValueError, IndexError, RuntimeError) as e:
        raise MediaError(f"{path}: cannot decode ({type(e).__name__}: {e})") from e


def _read_container(path, fps, sample_rate, start, duration, size, channels, missing_audio) -> AVClip:
    with av.open(str(path)) as container:
        vstream = next(iter(container.streams.video), None)
        astream = next(iter(container.streams.audio), None)
        if vstream is None:
            raise MediaError(f"{path}: no video stream (for audio only, use a .wav/.flac/.ogg/.mp3 file)")
        if astream is None and missing_audio == "error":
            raise MediaError(f"{path}: no audio stream; pass missing_audio='silence' to read it with a silent track")
        origin = min(_stream_start(s) for s in (vstream, astream) if s is not None)
        end = _container_end(container, vstream, astream)
        native_fps = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
        native_sr = astream.rate if astream is not None else 16000
        native_ch = astream.codec_context.channels if astream is not None else 1
    fps = float(fps or native_fps or 0)
    if fps <= 0:
        raise MediaError(f"{path}: the file declares no frame rate; pass fps=")
    sample_rate = int(sample_rate or native_sr)
    channels = int(channels or native_ch)
    if duration is None:
        if end is None:
            raise MediaError(f"{path}: the file declares no duration; pass duration=")
        duration = end - origin - start
        if duration <= 0:
            raise MediaError(f"{path}: start={start} s is past the end ({end - origin:.3f} s)")
        duration = max(1, round(duration * fps)) / fps  # whole frames, so both streams end together
    n_frames, n_samples = round(duration * fps), round(duration * sample_rate)
    t0 = origin + start
    video = _read_video(path, t0, n_frames, fps, size, float(native_fps or fps))
    if astream is None:
        audio = torch.zeros(channels, n_samples)
    else:
        audio = _read_audio_stream(path, t0, n_samples, sample_rate, channels)
    return AVClip(video=video, audio=audio, fps=fps, sample_rate=sample_rate, meta={"path": str(path), "start": start})


def _stream_start(stream) -> float:
    if stream.start_time is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _container_end(container, vstream, astream) -> float | None:
    ends = []
    for s in (vstream, astream):
        if s is not None and s.duration is not None and s.time_base is not None:
            ends.append(_stream_start(s) + float(s.duration * s.time_base))
    if ends:
        return max(ends)
    if container.duration is not None:
        return container.duration / 1_000_000 + (container.start_time or 0) / 1_000_000
    return None


def _seek(container, stream, t: float) -> None:
    """Seek to the keyframe at or before time t (seconds); decoding forward from there reaches t."""
    if t <= 0.5 or stream.time_base is None:
        return
    container.seek(int((t - 0.5) / stream.time_base), stream=stream, backward=True, any_frame=False)


def _cover_size(h0: int, w0: int, size: tuple[int, int] | None) -> tuple[int, int]:
    if size is None:
        return h0, w0
    scale = max(size[0] / h0, size[1] / w0)
    return max(size[0], math.ceil(h0 * scale - 1e-6)), max(size[1], math.ceil(w0 * scale - 1e-6))


def _to_rgb(frame, size: tuple[int, int] | None) -> np.ndarray:
    """A decoded frame as uint8 (H, W, 3), scaled to cover `size` and centre-cropped to it."""
    sh, sw = _cover_size(frame.height, frame.width, size)
    rgb = frame.to_ndarray(format="rgb24", width=sw, height=sh, interpolation="AREA" if sh < frame.height else None)
    if size is None:
        return rgb
    y0, x0 = (sh - size[0]) // 2, (sw - size[1]) // 2
    return np.ascontiguousarray(rgb[y0 : y0 + size[0], x0 : x0 + size[1]])


def _read_video(path: Path, t0: float, n_frames: int, fps: float, size, native_fps: float) -> torch.Tensor:
    """Frame k = the source frame on screen at time t0 + k/fps (the last one whose time is <= that).

    A small tolerance (2 ms at most) absorbs timestamps the container rounded (e.g. to whole ms).
    """
    targets = t0 + np.arange(n_frames) / fps
    tol = min(0.002, 0.1 / max(fps, native_fps))
    out: list[np.ndarray | None] = [None] * n_frames
    k, current = 0, None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        _seek(container, stream, t0)
        for frame in container.decode(stream):
            if frame.time is None:
                continue
            while k < n_frames and targets[k] + tol < frame.time:
                out[k] = current if current is not None else None
                k += 1
            if k >= n_frames:
                break
            current = _to_rgb(frame, size)
        while k < n_frames:  # past the last frame: hold it
            out[k] = current
            k += 1
    first = next((f for f in out if f is not None), None)
    if first is None:
        raise MediaError(f"{path}: no video frames at or after {t0:.3f} s (start is past the end?)")
    filled = [f if f is not None else first for f in out]
    if not filled:
        h, w = size if size else (0, 0)
        return torch.zeros(0, h, w, 3, dtype=torch.uint8)
    return torch.from_numpy(np.stack(filled))


def _read_audio_stream(path: Path, t0: float, n_samples: int, sample_rate: int, channels: int) -> torch.Tensor:
    """round(duration*sr) samples from time t0, resampled and down/up-mixed by libswresample; silence past the end."""
    layout = {1: "mono", 2: "stereo"}.get(channels)
    chunks, first_time = [], None
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        layout = layout or stream.layout.name
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate)
        _seek(container, stream, t0)
        need_until = t0 + n_samples / sample_rate + 0.1
        for frame in container.decode(stream):
            if first_time is None:
                if frame.time is None:
                    continue
                first_time = frame.time
            chunks.extend(f.to_ndarray() for f in resampler.resample(frame))
            if frame.time is not None and frame.time > need_until:
                break
        chunks.extend(f.to_ndarray() for f in resampler.resample(None))
    if first_time is None or not chunks:
        raise MediaError(f"{path}: the audio stream has no decodable frames")
    audio = np.concatenate(chunks, axis=1).astype(np.float32)  # (C, n) from first_time
    offset = round((t0 - first_time) * sample_rate)
    return torch.from_numpy(_window(audio, offset, n_samples))


def _window(audio: np.ndarray, offset: int, n: int) -> np.ndarray:
    """audio[:, offset : offset + n] with zeros where it falls outside; (C, n)."""
    out = np.zeros((audio.shape[0], n), np.float32)
    lo, hi = max(offset, 0), min(offset + n, audio.shape[1])
    if hi > lo:
        out[:, lo - offset : hi - offset] = audio[:, lo:hi]
    return np.clip(out, -1.0, 1.0)


def _read_audio_file(path, sample_rate, start, duration, channels, fps) -> AVClip:
    try:
        info = sf.info(str(path))
        first = round(start * info.samplerate)
        frames = -1 if duration is None else round(duration * info.samplerate)
        data, sr = sf.read(str(path), start=first, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise MediaError(f"{path}: cannot read audio ({e})") from e
    if first >= info.frames:
        raise MediaError(f"{path}: start={start} s is past the end ({info.frames / info.samplerate:.3f} s)")
    audio = torch.from_numpy(np.ascontiguousarray(data.T))  # (C, n)
    audio = mix_channels(audio, channels or audio.shape[0])
    sample_rate = int(sample_rate or sr)
    if sample_rate != sr:
        audio = torchaudio.functional.resample(audio, sr, sample_rate)
    dur = duration if duration is not None else info.frames / sr - start
    n = round(dur * sample_rate)
    audio = torch.from_numpy(_window(audio.numpy(), 0, n))
    video = torch.zeros(0, 0, 0, 3, dtype=torch.uint8)
    return AVClip(video, audio, float(fps or 0.0), sample_rate, meta={"path": str(path), "start": start})


def mix_channels(audio: torch.Tensor, channels: int) -> torch.Tensor:
    """(C, n) -> (channels, n): average down to mono, duplicate mono up, keep the first two of many for stereo."""
    c = audio.shape[0]
    if c == channels:
        return audio
    if channels == 1:
        return audio.mean(0, keepdim=True)
    if c == 1:
        return audio.expand(channels, -1).clone()
    if channels == 2 and c > 2:
        return audio[:2].clone()
    raise MediaError(f"cannot map {c} audio channels to {channels}")


# ----------------------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------------------
def write_clip(clip: AVClip, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write an mp4 (H.264 yuv420p + AAC) or, for .wav/.flac, audio only. Atomic: a temp file renamed at the end."""
    path = Path(path)
    suffix = path.suffix.lower()
    audio = clip.audio.detach().float().clamp(-1, 1).cpu().numpy()
    if audio.ndim != 2 or audio.shape[0] not in (1, 2):
        raise MediaError(f"{path}: audio must be (channels, samples) with 1 or 2 channels, got {tuple(audio.shape)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".wav", ".flac"):
        with atomic_path(path) as tmp:
            sf.write(str(tmp), audio.T, int(clip.sample_rate), format=suffix[1:].upper())
        return path
    if suffix not in (".mp4", ".mov", ".m4v"):
        raise MediaError(f"{path}: write_clip writes .mp4 (video + audio) or .wav/.flac (audio); got {suffix!r}")
    video = clip.video.detach().cpu()
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != torch.uint8 or video.shape[0] == 0:
        raise MediaError(f"{path}: video must be uint8 (T, H, W, 3) with T > 0, got {tuple(video.shape)} {video.dtype}")
    if video.shape[1] % 2 or video.shape[2] % 2:
        raise MediaError(f"{path}: H.264 (yuv420p) needs even width and height, got {video.shape[2]}x{video.shape[1]}")
    with atomic_path(path) as tmp:
        _write_mp4(tmp, video.numpy(), audio, clip.fps, int(clip.sample_rate), metadata or {})
    return path


def _write_mp4(path: Path, video: np.ndarray, audio: np.ndarray, fps: float, sr: int, metadata: dict) -> None:
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart+use_metadata_tags"}) as out:
        for key, value in metadata.items():
            out.metadata[str(key)] = str(value)
        vs = out.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "fast"})
        vs.width, vs.height, vs.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        vs.codec_context.time_base = 1 / rate
        layout = "mono" if audio.shape[0] == 1 else "stereo"
        aus = out.add_stream("aac", rate=sr, layout=layout)
        aus.codec_context.time_base = Fraction(1, sr)
        # interleave by time: each video frame followed by the audio up to the next frame's time
        samples_per_frame = sr / float(rate)
        written = 0
        for i, frame in enumerate(video):
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            out.mux(vs.encode(vf))
            upto = audio.shape[1] if i == len(video) - 1 else round((i + 1) * samples_per_frame)
            written = _mux_audio(out, aus, audio, written, min(upto, audio.shape[1]), sr, layout)
        _mux_audio(out, aus, audio, written, audio.shape[1], sr, layout)
        out.mux(vs.encode(None))
        out.mux(aus.encode(None))


def _mux_audio(out, stream, audio: np.ndarray, lo: int, hi: int, sr: int, layout: str) -> int:
    if hi <= lo:
        return lo
    af = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio[:, lo:hi]), format="fltp", layout=layout)
    af.sample_rate, af.pts = sr, lo
    out.mux(stream.encode(af))
    return hi


def read_metadata(path: str | Path) -> dict[str, str]:
    """Container metadata (e.g. prompt, seed, model hash written by the generator)."""
    try:
        with av.open(str(path)) as container:
            return dict(container.metadata)
    except (av.error.FFmpegError, OSError) as e:
        raise MediaError(f"{path}: cannot read metadata ({e})") from e
