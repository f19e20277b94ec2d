"""Media at the boundary: `AVClip`, and reading / writing clips with exact audio-video sync.

One clock: time zero of a file is the earliest start time of its streams (as PyAV reports them, so AAC priming and
edit lists are already accounted for); a video frame shown at time t and an audio sample at time t come back at the
same position of the returned clip. Video is resampled to the target fps by timestamp (frame k shows the source
frame on screen at start + k / fps); audio sample k is the one at start + k / sr, each decoded audio frame placed
by its own timestamp, then resampled with torchaudio. The PyAV decoding itself lives in `avgen.media_io`.
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
from avgen.errors import InputError
from avgen.media_io import PYAV_ERRORS, MediaError, Probe, decode_audio, decode_video, probe

AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".ogv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg"}


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
    Audio-only files (wav, flac, ogg, mp3) give a clip with zero frames. A window that runs past the end is padded
    (last frame held, silence); a start past the end, or a file that decodes well short of what it declares (cut,
    corrupt), raises MediaError naming the file.
    """
    path = Path(path)
    if missing_audio not in ("error", "silence"):
        raise InputError(f"missing_audio must be 'error' or 'silence', got {missing_audio!r}")
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
    except MediaError as e:
        if str(path) in str(e):
            raise
        raise MediaError(f"{path}: {e}") from e
    except PYAV_ERRORS as e:
        raise MediaError(f"{path}: cannot decode, the file is corrupt or cut ({type(e).__name__}: {e})") from e


def _read_container(path, fps, sample_rate, start, duration, size, channels, missing_audio) -> AVClip:
    info = probe(path)
    if not info.has_audio and missing_audio == "error":
        raise MediaError(f"{path}: no audio stream; pass missing_audio='silence' to read it with a silent track")
    fps = float(fps or info.fps)
    if fps <= 0:
        raise MediaError(f"{path}: the file declares no frame rate; pass fps=")
    sample_rate, channels = int(sample_rate or info.sample_rate), int(channels or info.channels)
    length = None if info.end is None else info.end - info.origin
    if length is not None and start >= length:
        raise MediaError(f"{path}: start={start} s is past the end of the file ({length:.3f} s)")
    if duration is None:
        if length is None:
            raise MediaError(f"{path}: the file declares no duration; pass duration=")
        duration = max(1, round((length - start) * fps)) / fps  # whole frames, so both streams end together
    n_frames, n_samples = round(duration * fps), round(duration * sample_rate)
    t0 = info.origin + start
    video = decode_video(path, t0, n_frames, fps, size, info.fps or fps)
    if video.data is None and n_frames:
        where = "past the end of the file" if length is None else f"the file declares {length:.3f} s: corrupt or cut?"
        raise MediaError(f"{path}: no video frames decode at or after start={start} s ({where})")
    audio, audio_end = torch.zeros(channels, n_samples), -math.inf
    if info.has_audio:
        audio, audio_end = _container_audio(path, t0, n_samples, sample_rate, channels, info.sample_rate)
    _check_complete(path, info, t0 + duration, max(video.end, audio_end), 0.1 + 1 / (info.fps or fps))
    if video.data is None:
        h, w = size if size else (0, 0)
        frames = torch.zeros(0, h, w, 3, dtype=torch.uint8)
    else:
        frames = torch.from_numpy(video.data)
    meta = {"path": str(path), "start": start}
    return AVClip(video=frames, audio=audio, fps=fps, sample_rate=sample_rate, meta=meta)


def _check_complete(path: Path, info: Probe, window_end: float, decoded_end: float, tol: float) -> None:
    """Raise when decoding ran out of data (tol) before both the window's end and the end the header declares."""
    if info.end is None or decoded_end >= min(window_end, info.end) - tol:
        return
    raise MediaError(
        f"{path}: the file is cut or corrupt: it declares {info.end - info.origin:.3f} s "
        f"but decodes only to {max(decoded_end - info.origin, 0.0):.3f} s"
    )


def _container_audio(path, t0: float, n: int, sample_rate: int, channels: int, rate: int):
    """(channels, n) samples at sample_rate from time t0, and where the stream's data ran out (Decoded.end).

    Decoded at the stream's own rate with a margin on both sides, mixed down, resampled, then cut to the window.
    """
    margin = _resample_margin(rate, sample_rate)  # in samples at `rate`; margin * sample_rate / rate is whole
    n_native = math.ceil(n * rate / sample_rate) + 2 * margin + 1
    decoded = decode_audio(path, t0 - margin / rate, n_native, rate)
    if decoded.data is None:
        return torch.zeros(channels, n), decoded.end
    audio = mix_channels(torch.from_numpy(decoded.data), channels)  # (channels, n_native)
    if sample_rate != rate:
        audio = torchaudio.functional.resample(audio, rate, sample_rate)
    skip = margin * sample_rate // rate
    return torch.from_numpy(_window(audio.numpy(), skip, n)), decoded.end


def _resample_margin(rate: int, sample_rate: int) -> int:
    """About 20 ms of samples at `rate` (0 without resampling), a length that is whole at both rates."""
    if rate == sample_rate:
        return 0
    step = rate // math.gcd(rate, sample_rate)
    return step * math.ceil(0.02 * rate / step)


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


# ITU-R BS.775 fold-down to (L', R') for FFmpeg's channel orders: 5.1 = FL FR FC LFE BL BR, 7.1 = ... SL SR.
# L' = L + 0.707 C + 0.707 Ls, R' = R + 0.707 C + 0.707 Rs, LFE dropped; rows scaled to sum to 1 so nothing clips.
_A = 0.7071
_FOLD_DOWN = {
    6: [[1, 0, _A, 0, _A, 0], [0, 1, _A, 0, 0, _A]],
    8: [[1, 0, _A, 0, _A, 0, _A, 0], [0, 1, _A, 0, 0, _A, 0, _A]],
}


def mix_channels(audio: torch.Tensor, channels: int) -> torch.Tensor:
    """(C, n) -> (channels, n).

    5.1 and 7.1 fold down ITU-R BS.775 style (see _FOLD_DOWN) to stereo, and to mono as the mean of L' and R'. Other
    layouts: mono is the mean of all channels, stereo keeps the first two; mono is duplicated up.
    """
    c = audio.shape[0]
    if c == channels:
        return audio
    if c in _FOLD_DOWN and channels in (1, 2):
        matrix = torch.tensor(_FOLD_DOWN[c], dtype=audio.dtype, device=audio.device)
        stereo = (matrix / matrix.sum(1, keepdim=True)) @ audio  # (2, n)
        return stereo if channels == 2 else stereo.mean(0, keepdim=True)
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
    except PYAV_ERRORS as e:
        raise MediaError(f"{path}: cannot read metadata ({type(e).__name__}: {e})") from e
