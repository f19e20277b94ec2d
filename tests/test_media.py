"""Media I/O: exact sync through write -> read, every container, odd time bases, offsets, bad files, atomic writes."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from avgen import media
from avgen.media import AVClip, MediaError, read_clip, read_metadata, write_clip
from tests.media_factory import click_onsets, flash_click_clip, flash_frames, write_custom

IMAGEIO = Path("/usr/lib/python3/dist-packages/imageio/resources/images")
EVENTS = (0.3125, 1.0625)


def assert_events(clip: AVClip, events, fps: float, start: float = 0.0) -> None:
    want_frames = [round((e - start) * fps) for e in events if e >= start]
    got_frames = flash_frames(clip.video)
    assert got_frames == want_frames, (got_frames, want_frames)
    onsets = click_onsets(clip.audio, clip.sample_rate)
    assert len(onsets) == len(want_frames)
    for got, e in zip(onsets, [e for e in events if e >= start], strict=True):
        assert abs(got - (e - start)) <= 0.010, f"click at {e - start:.4f} s decoded at {got:.4f} s"


@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip_keeps_flashes_and_clicks_in_sync(tmp_path, channels):
    clip = flash_click_clip(channels=channels, events=EVENTS)
    path = write_clip(clip, tmp_path / "clip.mp4")
    back = read_clip(path)
    assert back.video.shape == clip.video.shape and back.audio.shape == clip.audio.shape
    assert back.fps == 16 and back.sample_rate == 16000
    assert_events(back, EVENTS, 16)
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_window_and_resampling_by_timestamp(tmp_path):
    path = write_clip(flash_click_clip(events=EVENTS), tmp_path / "clip.mp4")
    back = read_clip(path, start=0.5, duration=1.0)
    assert back.video.shape[0] == 16 and back.audio.shape[1] == 16000
    assert_events(back, EVENTS, 16, start=0.5)
    back = read_clip(path, fps=25, sample_rate=22050, duration=2.0, size=(24, 40))
    assert back.video.shape == (50, 24, 40, 3) and back.audio.shape == (1, 44100)
    # 16 -> 25 fps by timestamp: output frames whose time falls inside a flash frame's display span are white
    for e in EVENTS:
        span = [k for k in range(50) if e <= k / 25 < e + 1 / 16]
        assert set(span) <= set(flash_frames(back.video))
    for got, e in zip(click_onsets(back.audio, 22050), EVENTS, strict=True):
        assert abs(got - e) <= 0.010


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed (Debian package ffmpeg)")
def test_ffprobe_sees_h264_and_aac_of_equal_duration(tmp_path):
    path = write_clip(flash_click_clip(duration=1.5, fps=25, sr=22050, channels=2), tmp_path / "c.mp4")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,duration,pix_fmt,channels", "-of", "json", path],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    streams = {s["codec_name"]: s for s in json.loads(out.stdout)["streams"]}
    assert set(streams) == {"h264", "aac"}
    assert streams["h264"]["pix_fmt"] == "yuv420p" and streams["aac"]["channels"] == 2
    assert abs(float(streams["h264"]["duration"]) - float(streams["aac"]["duration"])) <= 1 / 25


@pytest.mark.skipif(not (IMAGEIO / "realshort.mp4").exists(), reason="Debian python3-imageio not installed")
def test_real_mp4_reads_to_exact_shapes():
    clip = read_clip(IMAGEIO / "realshort.mp4", fps=16, sample_rate=16000, duration=1.0, size=(64, 64))
    assert clip.video.shape == (16, 64, 64, 3) and clip.video.dtype == torch.uint8
    assert clip.audio.shape == (1, 16000) and clip.audio.dtype == torch.float32
    assert clip.audio.abs().max() > 0.01, "real audio should not be silent"
    full = read_clip(IMAGEIO / "realshort.mp4")
    assert full.sample_rate == 48000 and abs(full.fps - 30) < 0.1
    assert full.video.shape[0] == round(full.audio.shape[1] / 48000 * full.fps)
    cockatoo = read_clip(IMAGEIO / "cockatoo.mp4", fps=8, sample_rate=16000, start=5.0, duration=2.0, size=(32, 48))
    assert cockatoo.video.shape == (16, 32, 48, 3) and cockatoo.audio.shape == (1, 32000)


@pytest.mark.parametrize(
    "suffix,vcodec,acodec,pix_fmt",
    [
        (".webm", "libvpx-vp9", "libopus", "yuv420p"),
        (".mkv", "libx264", "flac", "yuv420p"),
        (".avi", "mjpeg", "pcm_s16le", "yuvj420p"),
        (".mov", "libx264", "aac", "yuv420p"),
    ],
)
def test_containers_decode_in_sync(tmp_path, suffix, vcodec, acodec, pix_fmt):
    sr = 48000 if acodec == "libopus" else 16000
    clip = flash_click_clip(sr=sr, events=EVENTS)
    path = write_custom(tmp_path / f"c{suffix}", clip, vcodec=vcodec, acodec=acodec, pix_fmt=pix_fmt)
    back = read_clip(path, fps=16, sample_rate=16000, duration=2.0)
    assert back.video.shape == (32, 32, 32, 3) and back.audio.shape == (1, 32000)
    assert_events(back, EVENTS, 16)


@pytest.mark.parametrize("time_base", [Fraction(1, 8), Fraction(90000, 2999) ** -1])
def test_odd_time_bases(tmp_path, time_base):
    fps = 8 if time_base == Fraction(1, 8) else Fraction(2999, 100)
    clip = flash_click_clip(fps=float(fps), events=(0.5, 1.25))
    clip.video = clip.video[: round(2 * float(fps))]
    path = write_custom(tmp_path / "tb.mkv", clip, time_base=time_base, acodec="aac")
    back = read_clip(path, fps=8, sample_rate=16000, duration=2.0)
    assert back.video.shape[0] == 16
    assert flash_frames(back.video) == [4, 10]


def test_audio_starting_late_is_aligned(tmp_path):
    """Audio pts start 0.25 s after video: a click at absolute time T must land at T on the returned clock."""
    clip = flash_click_clip(events=(0.5, 1.0))
    clip.audio = torch.zeros_like(clip.audio)
    clip.audio[0, round(0.25 * 16000) : round(0.25 * 16000) + 64] = 0.8  # at 0.25 s into the audio = 0.5 s absolute
    path = write_custom(tmp_path / "late.mkv", clip, acodec="flac", audio_delay=0.25)
    back = read_clip(path, duration=2.0)
    assert abs(click_onsets(back.audio, 16000)[0] - 0.5) <= 0.010
    assert flash_frames(back.video) == [8, 16]


def test_six_channels_mix_down(tmp_path):
    audio = np.zeros((16000, 6), np.float32)
    audio[4000:4100, 2] = 0.9  # a click on the centre channel only
    sf.write(tmp_path / "six.flac", audio, 16000)
    mono = read_clip(tmp_path / "six.flac", channels=1)
    stereo = read_clip(tmp_path / "six.flac", channels=2, sample_rate=8000)
    assert mono.audio.shape == (1, 16000) and stereo.audio.shape == (2, 8000)
    assert mono.video.shape[0] == 0
    assert abs(click_onsets(mono.audio, 16000, threshold=0.1)[0] - 0.25) < 0.002
    clip = flash_click_clip()
    clip.audio = torch.from_numpy(np.tile(clip.audio.numpy(), (6, 1)))
    path = write_custom(tmp_path / "six.mkv", clip, acodec="flac", audio_layout="5.1")
    back = read_clip(path, channels=2)
    assert back.audio.shape == (2, 32000) and back.audio.abs().max() > 0.1


def test_missing_audio_and_bad_files(tmp_path):
    silent = write_custom(tmp_path / "silent.mp4", flash_click_clip(), acodec=None)
    with pytest.raises(MediaError, match="silent.mp4.*no audio"):
        read_clip(silent)
    clip = read_clip(silent, missing_audio="silence", sample_rate=16000)
    assert clip.audio.shape == (1, 32000) and clip.audio.abs().max() == 0
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 20)
    good = write_clip(flash_click_clip(), tmp_path / "good.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(good[: len(good) // 3])
    for name in ("empty.mp4", "text.mp4", "cut.mp4", "absent.mp4"):
        with pytest.raises(MediaError, match=name):
            read_clip(tmp_path / name)
    with pytest.raises(MediaError, match="past the end"):
        read_clip(tmp_path / "good.mp4", start=5.0)


def test_write_is_atomic_on_failure(tmp_path, monkeypatch):
    write_clip(flash_click_clip(), tmp_path / "keep.mp4")
    before = (tmp_path / "keep.mp4").read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(media, "_mux_audio", boom)
    with pytest.raises(RuntimeError):
        write_clip(flash_click_clip(), tmp_path / "keep.mp4")
    with pytest.raises(RuntimeError):
        write_clip(flash_click_clip(), tmp_path / "new.mp4")
    assert (tmp_path / "keep.mp4").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]


def test_metadata_and_audio_only_outputs(tmp_path):
    path = write_clip(flash_click_clip(), tmp_path / "m.mp4", metadata={"prompt": "a red ball", "seed": 7})
    meta = read_metadata(path)
    assert meta["prompt"] == "a red ball" and meta["seed"] == "7"
    wav = write_clip(flash_click_clip(channels=2), tmp_path / "a.wav")
    data, sr = sf.read(wav)
    assert sr == 16000 and data.shape == (32000, 2)
    with pytest.raises(MediaError, match="even width"):
        odd = AVClip(torch.zeros(4, 31, 32, 3, dtype=torch.uint8), torch.zeros(1, 4000), 16, 16000)
        write_clip(odd, tmp_path / "o.mp4")
