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
    video_delay: float = 0.0,
    keyint: int | None = None,
    all_keyframes: bool = False,
) -> Path:
    """Write a clip with chosen codecs, video time base and start offsets (a stream's pts shifted by its delay).

    keyint sets libx264's GOP length; all_keyframes marks every video packet as a keyframe, as a broken muxer does
    (the container's index then lets a seek land on a frame that cannot be decoded on its own).
    """
    fps = Fraction(clip.fps).limit_denominator(1001)
    audio = clip.audio.numpy()
    options = {"x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"} if keyint else {}
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream(vcodec, rate=fps, options=options)
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
            vf.pts = round((Fraction(i) / fps + Fraction(video_delay)) / tb)
            vf.time_base = tb
            _mux(out, vs.encode(vf), all_keyframes)
        _mux(out, vs.encode(None), all_keyframes)
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


def _mux(out, packets, all_keyframes: bool) -> None:
    for packet in packets:
        if all_keyframes:
            packet.is_keyframe = True
        out.mux(packet)


def shift_audio_packets(src: Path, dst: Path, after: float, shift: float) -> Path:
    """Remux src to dst, moving the timestamps of audio packets at or after `after` seconds later by `shift` seconds.

    The decoded samples stay the same, only their times change: like a file whose first AAC packet lasts longer than
    it decodes (real cameras write such files) or an audio stream with a dropped packet.
    """
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux():
            if packet.size == 0 or packet.stream.index not in streams:
                continue  # the demuxer's end-of-stream marker
            if packet.stream.type == "audio" and packet.pts * packet.time_base >= after:
                delta = round(shift / packet.time_base)
                packet.pts, packet.dts = packet.pts + delta, None if packet.dts is None else packet.dts + delta
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


LEVELS = np.array([0, 51, 102, 153, 204, 255])


def numbered_frames(n: int, size: int = 32) -> torch.Tensor:
    """(n, size, size, 3) uint8 frames, frame i a flat colour that encodes i (6 levels per channel, 216 codes)."""
    i = np.arange(n)
    rgb = LEVELS[np.stack([i % 6, i // 6 % 6, i // 36 % 6], axis=1)].astype(np.uint8)  # (n, 3)
    return torch.from_numpy(np.ascontiguousarray(np.broadcast_to(rgb[:, None, None], (n, size, size, 3))))


def frame_numbers(video: torch.Tensor) -> list[tuple[int, float]]:
    """For each frame: (the number its colour encodes, the largest distance of its mean colour from that code)."""
    mean = video.float().mean(dim=(1, 2)).numpy()  # (t, 3)
    code = np.abs(mean[:, :, None] - LEVELS[None, None]).argmin(-1)  # (t, 3)
    err = np.abs(mean - LEVELS[code]).max(-1)
    return [(int(c[0] + 6 * c[1] + 36 * c[2]), float(e)) for c, e in zip(code, err, strict=True)]


def media_folder_with_bad_files(root: Path) -> Path:
    """Three good 2 s clips with captions beside four unreadable files (empty, truncated, no audio, garbage) and a
    file that is not media."""
    from avgen.media import write_clip

    for i in range(3):
        clip = flash_click_clip(duration=2.0, events=(0.25 + 0.25 * i, 1.5))
        write_clip(clip, root / f"good{i}.mp4")
        (root / f"good{i}.txt").write_text(f"clip number {i}\n")
    (root / "empty.mp4").write_bytes(b"")
    data = (root / "good0.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 4])
    write_custom(root / "silent.mkv", flash_click_clip(), acodec=None)
    (root / "garbage.avi").write_bytes(b"\x00garbage" * 100)
    (root / "notes.md").write_text("not media")
    return root
