"""PyAV decoding of one time window of a container, on the file's clock (used by `avgen.media.read_clip`).

Time zero of a file is the earliest start time of its streams. Video: frame k of a window is the source frame on
screen at t0 + k / fps. Audio: every decoded frame is placed at its own timestamp (AAC priming trimmed by an edit
list, a first packet that lasts longer than it decodes, a dropped packet or a stream that starts late all land where
the file says), with a small tolerance that keeps rounded timestamps (e.g. Matroska's whole milliseconds) contiguous.
Seeks land on the keyframe at or before the target; when that fails (a broken keyframe index, a decoder error) the
window is decoded from the start of the file instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from avgen.errors import UserError

# What a broken or cut file can raise from inside PyAV (streams with None fields raise AttributeError/TypeError).
PYAV_ERRORS = (av.error.FFmpegError, OSError, EOFError, ValueError, IndexError, KeyError, AttributeError, TypeError,
               ZeroDivisionError, RuntimeError)  # fmt: skip
SEEK_MARGIN = 0.5  # s: seek this far before the target, so B-frame reordering (keyframe pts > dts) stays before it


class MediaError(UserError, ValueError):
    """A media file that cannot be read or written as asked; the message names the file and what to change."""


@dataclass
class Probe:
    """What the container header says. Times in seconds on the file's clock."""

    origin: float  # the file's time zero: the earliest stream start
    end: float | None  # where the longest stream ends (None: the file declares no duration)
    fps: float  # 0.0 when undeclared
    has_audio: bool
    sample_rate: int  # of the audio stream (16000 without one)
    channels: int  # of the audio stream (1 without one)


@dataclass
class Decoded:
    """A decoded window: video uint8 (T, H, W, 3) or audio float32 (C, n); None when no frame fell in it.

    end: where the stream's data ran out (s, file clock) when decoding hit the end of the file inside the window,
    math.inf when it got past the window.
    """

    data: np.ndarray | None
    end: float


def probe(path: Path) -> Probe:
    with av.open(str(path)) as container:
        vstream = next(iter(container.streams.video), None)
        astream = next(iter(container.streams.audio), None)
        if vstream is None:
            raise MediaError(f"{path}: no video stream (for audio only, use a .wav/.flac/.ogg/.mp3 file)")
        starts = [t for t in (_stream_start(s) for s in (vstream, astream) if s is not None) if t is not None]
        fps = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
        return Probe(
            origin=min(starts, default=0.0),
            end=_container_end(container, vstream, astream),
            fps=float(fps or 0),
            has_audio=astream is not None,
            sample_rate=astream.rate if astream is not None else 16000,
            channels=astream.codec_context.channels if astream is not None else 1,
        )


def _stream_start(stream) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def _container_end(container, vstream, astream) -> float | None:
    ends = []
    for s in (vstream, astream):
        if s is not None and s.duration is not None and s.time_base is not None:
            ends.append((_stream_start(s) or 0.0) + float(s.duration * s.time_base))
    if ends:
        return max(ends)
    if container.duration is not None:
        return container.duration / 1_000_000 + (container.start_time or 0) / 1_000_000
    return None


def _seek(container, stream, t: float) -> bool:
    """Seek to the keyframe at or before t - SEEK_MARGIN; False when there is no need (or no way) to seek."""
    if t <= SEEK_MARGIN or stream.time_base is None:
        return False
    container.seek(int((t - SEEK_MARGIN) / stream.time_base), stream=stream, backward=True, any_frame=False)
    return True


def _seek_then_start(decode, path: Path, t0: float, *args) -> Decoded:
    """decode(path, t0, *args, seek=True), or from the start when decoding after the seek fails or lands late."""
    try:
        out = decode(path, t0, *args, seek=True)
        if out is not None:
            return out
    except av.error.FFmpegError:
        pass  # e.g. the seek landed on a frame that needs ones before it
    return decode(path, t0, *args, seek=False)


# ----------------------------------------------------------------------------------------------------------------------
# video
# ----------------------------------------------------------------------------------------------------------------------
def decode_video(path: Path, t0: float, n_frames: int, fps: float, size, native_fps: float) -> Decoded:
    """Frame k = the source frame on screen at time t0 + k/fps (the last one whose time is <= that).

    A small tolerance (2 ms at most) absorbs timestamps the container rounded (e.g. to whole ms). Before the first
    frame: the first frame; past the last one: the last one held.
    """
    return _seek_then_start(_decode_video, path, t0, n_frames, fps, size, native_fps)


def _decode_video(path: Path, t0: float, n_frames: int, fps: float, size, native_fps: float, seek: bool):
    targets = t0 + np.arange(n_frames) / fps
    tol = min(0.002, 0.1 / max(fps, native_fps))
    out: list[np.ndarray | None] = []
    current, rgb, end = None, None, -math.inf  # the frame on screen, converted once a target shows it
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        seek = _seek(container, stream, t0) if seek else False
        for frame in container.decode(stream):
            if frame.time is None or frame.is_corrupt:
                continue
            if current is None and seek:
                if frame.time > t0 + tol:
                    return None  # no clean keyframe at or before the target
                if not frame.key_frame:
                    continue  # the decoder flags frames that depend on a bad start only sometimes: wait for a key
            while len(out) < n_frames and targets[len(out)] + tol < frame.time:
                rgb = rgb if rgb is not None or current is None else _to_rgb(current, size)
                out.append(rgb)
            if len(out) == n_frames:
                return Decoded(_stack(out), math.inf)
            current, rgb = frame, None
            step = frame.duration * frame.time_base if frame.duration and frame.time_base else 1 / native_fps
            end = frame.time + float(step)
    if current is None and seek:
        return None
    rgb = rgb if rgb is not None or current is None else _to_rgb(current, size)
    out += [rgb] * (n_frames - len(out))  # past the last frame: hold it
    return Decoded(_stack(out), end)


def _stack(frames: list[np.ndarray | None]) -> np.ndarray | None:
    first = next((f for f in frames if f is not None), None)
    if first is None:
        return None
    return np.stack([f if f is not None else first for f in frames])


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


# ----------------------------------------------------------------------------------------------------------------------
# audio
# ----------------------------------------------------------------------------------------------------------------------
def decode_audio(path: Path, t0: float, n: int, rate: int) -> Decoded:
    """n samples of the first audio stream at `rate` (its own), sample j at time t0 + j/rate; zeros where it has none.

    Each decoded frame goes where its timestamp says, unless that is within max(1 ms, 1.5 time-base ticks) of where
    the previous frame ended: then it continues it (rounded timestamps must not open gaps or overlaps).
    """
    return _seek_then_start(_decode_audio, path, t0, n, rate)


def _decode_audio(path: Path, t0: float, n: int, rate: int, seek: bool):
    buf: np.ndarray | None = None
    pos, end = None, -math.inf  # pos: where the next sample goes (samples from t0)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        seek = _seek(container, stream, t0) if seek else False
        layout = stream.layout if stream.layout is not None and stream.layout.nb_channels else None
        to_float = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        jitter = max(0.001, 1.5 * float(stream.time_base or 0)) * rate
        for frame in container.decode(stream):
            if frame.time is not None:
                at = (frame.time - t0) * rate
                if pos is None and seek and at > 0:
                    return None  # the seek landed after the target
                if pos is None or abs(at - pos) > jitter:
                    pos = round(at)
            elif pos is None:
                continue
            chunks = [f.to_ndarray() for f in to_float.resample(frame)]
            if not chunks:
                continue
            chunk = np.concatenate(chunks, axis=1)  # (C, m)
            buf = np.zeros((chunk.shape[0], n), np.float32) if buf is None else buf
            _paste(buf, chunk, pos)
            pos += chunk.shape[1]
            if pos >= n:
                return Decoded(buf, math.inf)
            end = t0 + pos / rate
    return Decoded(buf, end)


def _paste(buf: np.ndarray, chunk: np.ndarray, pos: int) -> None:
    """buf[:, pos : pos + m] = chunk, clipped to buf; (C, n) and (C, m)."""
    if chunk.shape[0] != buf.shape[0]:
        raise MediaError(f"the audio changes from {buf.shape[0]} to {chunk.shape[0]} channels mid-stream")
    lo, hi = max(pos, 0), min(pos + chunk.shape[1], buf.shape[1])
    if hi > lo:
        buf[:, lo:hi] = chunk[:, lo - pos : hi - pos]
