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
from tests.media_factory import (
    click_onsets,
    flash_click_clip,
    flash_frames,
    frame_numbers,
    numbered_frames,
    shift_audio_packets,
    write_custom,
)

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


# ----------------------------------------------------------------------------------------------------------------------
# audio on the shared clock, past-the-end starts, broken files, 5.1 down-mix, seeking
# ----------------------------------------------------------------------------------------------------------------------
CLICK_TOL = 0.001  # seconds (16 samples at 16 kHz): audio is placed by timestamp to within a sample or two


def click_clip(clicks, audio_start: float = 0.0, duration: float = 2.0, sr: int = 16000) -> AVClip:
    """A grey clip whose audio (starting at `audio_start` on the file's clock) has clicks at the absolute `clicks`."""
    clip = flash_click_clip(duration=duration, sr=sr, events=())
    for c in clicks:
        s = round((c - audio_start) * sr)
        clip.audio[:, s : s + 64] = 0.8
    return clip


@pytest.mark.parametrize("suffix,acodec", [(".mp4", "aac"), (".mkv", "flac")])
@pytest.mark.parametrize("late", ["audio", "video"])
def test_audio_start_offset_lands_on_the_clock(tmp_path, suffix, acodec, late):
    """One stream starts 12 ms after the other: a click at 0.7 s on the file's clock comes back at 0.7 s (<= 1 ms)."""
    delay = {"audio_delay": 0.012} if late == "audio" else {"video_delay": 0.012}
    clip = click_clip([0.7], audio_start=delay.get("audio_delay", 0.0))
    path = write_custom(tmp_path / f"offset{suffix}", clip, acodec=acodec, **delay)
    for start, sr in ((0.0, 16000), (0.25, 22050), (0.6, 16000)):
        back = read_clip(path, start=start, duration=1.0, sample_rate=sr)
        (onset,) = click_onsets(back.audio, sr)
        assert abs(onset - (0.7 - start)) <= CLICK_TOL, f"start={start} sr={sr}: click at {onset:.5f} s"


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("after", [0.05, 1.0])
def test_audio_is_placed_by_timestamp_across_a_gap(tmp_path, suffix, after):
    """Audio packets whose timestamps jump 12.5 ms (as in imageio's realshort.mp4, whose first AAC packet lasts 1618
    samples but decodes to 1024) are placed at their timestamps, not glued to the samples before them."""
    clip = click_clip([0.5, 1.25])
    src = write_clip(clip, tmp_path / f"src{suffix}") if suffix == ".mp4" else write_custom(tmp_path / "src.mkv", clip)
    path = shift_audio_packets(src, tmp_path / f"gap{suffix}", after=after, shift=0.0125)
    want = [c + (0.0125 if c >= after else 0.0) for c in (0.5, 1.25)]
    for start in (0.0, 0.7):
        back = read_clip(path, start=start, duration=1.5)
        got = [o + start for o in click_onsets(back.audio, 16000)]
        want_here = [w for w in want if w >= start]
        assert len(got) == len(want_here)
        for g, w in zip(got, want_here, strict=True):
            assert abs(g - w) <= CLICK_TOL, f"start={start}: click expected at {w:.4f} s, decoded at {g:.4f} s"


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv", "clip.wav"])
def test_start_past_the_end_names_file_and_duration(tmp_path, name):
    clip = flash_click_clip()
    path = write_clip(clip, tmp_path / name) if name != "clip.mkv" else write_custom(tmp_path / name, clip)
    for start, duration in ((2.5, 0.5), (5.0, 1.0), (5.0, None), (2.1, None)):
        with pytest.raises(MediaError, match=rf"{name}.*past the end.*2\.0\d* s"):
            read_clip(path, start=start, duration=duration)
    assert read_clip(path, start=1.5, duration=1.0).audio.shape == (1, 16000)  # partly past the end: padded


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".webm"])
def test_truncated_and_garbage_files_raise_media_error(tmp_path, suffix):
    clip = flash_click_clip(sr=48000 if suffix == ".webm" else 16000)
    codecs = {".mkv": {"acodec": "flac"}, ".webm": {"vcodec": "libvpx-vp9", "acodec": "libopus"}}.get(suffix)
    path = tmp_path / f"good{suffix}"
    good = (write_clip(clip, path) if codecs is None else write_custom(path, clip, **codecs)).read_bytes()
    bad = {f"cut{k}{suffix}": good[: len(good) * k // 10] for k in range(1, 10)}
    bad[f"half{suffix}"] = good[: len(good) // 2]
    bad[f"random{suffix}"] = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    bad[f"zero{suffix}"] = b""
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(MediaError, match=name):
            read_clip(tmp_path / name)
    # the part of a cut file that is there still reads
    head = read_clip(tmp_path / f"cut8{suffix}", duration=0.25, fps=16, sample_rate=16000)
    assert head.video.shape == (4, 32, 32, 3) and head.audio.shape == (1, 4000)


def test_pyav_errors_are_wrapped_with_the_path(tmp_path, monkeypatch):
    path = write_clip(flash_click_clip(), tmp_path / "ok.mp4")
    for exc in (AttributeError("'NoneType' object has no attribute 'rate'"), IndexError("0"), TypeError("None")):

        def broken(*args, exc=exc, **kwargs):
            raise exc

        monkeypatch.setattr(media.av, "open", broken)
        with pytest.raises(MediaError, match="ok.mp4"):
            read_clip(path)
        with pytest.raises(MediaError, match="ok.mp4"):
            read_metadata(path)


def test_five_one_downmix_follows_itu_bs775():
    t = torch.arange(16000) / 16000
    tone = 0.9 * torch.sin(2 * torch.pi * 440 * t)
    six = torch.zeros(6, 16000)  # FL FR FC LFE BL BR
    six[2] = tone  # centre only
    six[3] = 0.9  # LFE: dropped
    stereo, mono = media.mix_channels(six, 2), media.mix_channels(six, 1)
    gain = 0.7071 / (1 + 2 * 0.7071)  # centre coefficient after normalising the rows to sum to 1
    assert stereo.shape == (2, 16000) and mono.shape == (1, 16000)
    assert torch.allclose(stereo[0], stereo[1]) and torch.allclose(stereo[0], gain * tone, atol=1e-4)
    assert torch.allclose(mono[0], stereo.mean(0), atol=1e-6)
    six[:] = 0
    six[0], six[4] = 1.0, 1.0  # full-scale left and left surround: normalised, no clipping, nothing on the right
    stereo = media.mix_channels(six, 2)
    assert stereo[0].max() <= 1.0 and stereo[0].max() > 0.7 and stereo[1].abs().max() == 0


def test_five_one_files_mix_the_centre_into_both_channels(tmp_path):
    clip = click_clip([0.5])
    six = torch.zeros(6, clip.audio.shape[1])
    six[2] = clip.audio[0]  # the click on the centre channel only
    clip.audio = six
    sf.write(tmp_path / "six.flac", six.numpy().T, 16000)
    path = write_custom(tmp_path / "six.mkv", clip, acodec="flac", audio_layout="5.1")
    for p in (tmp_path / "six.flac", path):
        stereo = read_clip(p, channels=2).audio
        level = 0.8 * 0.7071 / (1 + 2 * 0.7071)
        assert torch.allclose(stereo[0], stereo[1]), p.name
        assert abs(stereo.abs().max().item() - level) < 0.01, p.name
        assert abs(click_onsets(stereo, 16000, threshold=0.1)[0] - 0.5) <= CLICK_TOL


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
@pytest.mark.parametrize("broken_index", [False, True], ids=["index", "broken-index"])
def test_seek_into_a_long_gop_gives_the_right_frames(tmp_path, suffix, broken_index):
    """6.8 s at 25 fps with a keyframe every 2 s; frame i's colour encodes i. Reading from the middle must give
    exactly the frames on screen then, also when the container marks every frame as a keyframe (a seek then lands on
    a frame that cannot be decoded alone: its output is dropped and decoding falls back to the start)."""
    clip = AVClip(numbered_frames(170), torch.zeros(1, 16000 * 170 // 25), 25, 16000)
    path = write_custom(tmp_path / f"gop{suffix}", clip, keyint=50, all_keyframes=broken_index)
    for start in (4.3, 5.5, 2.9):
        back = read_clip(path, start=start, duration=1.2, fps=25)
        got = frame_numbers(back.video)
        first = int(start * 25 + 1e-6)  # the frame on screen at `start`
        assert [n for n, _ in got] == list(range(first, first + 30)), f"start={start}"
        assert max(e for _, e in got) < 12, f"start={start}: a frame's colour is off (garbage frame?)"


@pytest.mark.skipif(not (IMAGEIO / "cockatoo.mp4").exists(), reason="Debian python3-imageio not installed")
def test_real_file_seek_gives_the_frames_of_a_decode_from_the_start():
    """cockatoo.mp4's index lists a keyframe at 3.8 s that does not decode alone: seeking there gave green frames."""
    path = IMAGEIO / "cockatoo.mp4"
    seeked = read_clip(path, fps=8, sample_rate=16000, start=5.0, duration=1.0, size=(32, 48)).video
    whole = read_clip(path, fps=8, sample_rate=16000, start=0.0, duration=6.0, size=(32, 48)).video
    assert torch.equal(seeked, whole[40:48])
    green = seeked.float().mean(dim=(0, 1, 2))
    assert green[1] < green[0] + 40, f"green frames: mean RGB {green.tolist()}"
