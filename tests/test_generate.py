"""avgen-generate and AVGenPipeline with a tiny random-weight DiT: every task writes an mp4 whose streams have equal
durations, given media comes back unchanged but for the codec, metadata is written, bad inputs give one line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from avgen.media import AVClip, read_clip, read_metadata
from avgen.metrics.recon import psnr
from avgen.pipeline import AVGenPipeline
from tests.core_fixtures import tiny_model_dir
from tests.media_factory import flash_click_clip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("model") / "m")


def log_mel_distance(a: torch.Tensor, b: torch.Tensor, sr: int) -> float:
    import torchaudio

    mel = torchaudio.transforms.MelSpectrogram(sr, n_fft=512, hop_length=160, n_mels=40)
    n = min(a.shape[-1], b.shape[-1])
    la, lb = (torch.log(mel(x[..., :n].mean(0)) + 1e-5) for x in (a, b))
    return float((la - lb).abs().mean())


def generate(model_dir, tmp_path, *args):
    model = [] if any(a.startswith("model=") for a in args) else [f"model={model_dir}"]
    cmd = [sys.executable, "-m", "avgen.cli.generate", *model, f"out={tmp_path}/", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_pipeline_tasks_shapes_and_given_media_copied(model_dir):
    pipe = AVGenPipeline.from_pretrained(model_dir)
    clip = pipe("a small red circle bounces around", seed=3)
    assert clip.video.shape == (32, 64, 64, 3) and clip.audio.shape == (1, 32000)
    again = pipe("a small red circle bounces around", seed=3)
    assert torch.equal(clip.video, again.video) and torch.equal(clip.audio, again.audio)  # seeded
    assert not torch.equal(clip.video, pipe("a small red circle bounces around", seed=4).video)
    assert torch.equal(pipe("a small red circle bounces around", seed=3, cfg_sync=1.0).audio, clip.audio)  # 1: off
    synced = pipe("a small red circle bounces around", seed=3, cfg_sync=3.0)
    assert synced.audio.shape == clip.audio.shape and not torch.equal(synced.audio, clip.audio)
    short = pipe("x", duration=1.3)  # not a whole latent frame: generated at 1.5 s, cut to 1.3 s
    assert short.video.shape[0] == round(1.3 * 16) and short.audio.shape[1] == 20800
    speech = torch.randn(1, 27_200) * 0.1
    a2v = pipe("", "a2v", audio=speech)
    assert torch.equal(a2v.audio, speech) and a2v.video.shape[0] == round(1.7 * 16)
    frames = torch.randint(0, 256, (27, 64, 64, 3), dtype=torch.uint8)
    v2a = pipe("", "v2a", video=frames)
    assert torch.equal(v2a.video, frames) and v2a.audio.shape == (1, 27_000)
    ext = pipe("", "extend", clip=clip, seconds=1.5)
    assert ext.video.shape[0] == 32 + 24 and ext.audio.shape[1] == 32000 + 24000
    assert torch.equal(ext.video[:32], clip.video) and torch.equal(ext.audio[:, :32000], clip.audio)
    with pytest.raises(ValueError, match="up to 4 s"):
        pipe("", "a2v", audio=torch.zeros(1, 16000 * 5))
    with pytest.raises(ValueError, match="unknown task"):
        pipe("x", "dance")


@pytest.mark.parametrize("task", ["t2av", "a2v", "v2a", "extend"])
def test_cli_writes_synced_mp4_and_keeps_given_media(model_dir, tmp_path, task):
    given = flash_click_clip(duration=2.0, fps=16, sr=16000, size=64, events=(0.5, 1.25))
    src = tmp_path / "given.mp4"
    given.save(src)
    src_clip = read_clip(src)
    args = ["prompt=a man says 'hello', twice", "seed=5"] + ([f"task={task}", f"input={src}"] if task != "t2av" else [])
    done = generate(model_dir, tmp_path, *args, "seconds=1")
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / done.stdout.split()[0].split("/")[-1]
    clip = read_clip(out)
    video_s, audio_s = clip.video.shape[0] / clip.fps, clip.audio.shape[1] / clip.sample_rate
    assert abs(video_s - audio_s) < 1 / clip.fps, (video_s, audio_s)
    assert video_s == pytest.approx(3.0 if task == "extend" else 2.0, abs=1e-6)
    meta = read_metadata(out)
    assert meta["prompt"] == "a man says 'hello', twice" and meta["seed"] == "5" and len(meta["model_hash"]) == 16
    n, s = src_clip.video.shape[0], src_clip.audio.shape[1]
    if task in ("v2a", "extend"):  # the given frames come back but for a second H.264 pass (crf 18)
        assert psnr(clip.video[:n], src_clip.video) > 35.0
    if task in ("a2v", "extend"):  # the given samples come back but for a second AAC pass
        assert log_mel_distance(clip.audio[:, :s], src_clip.audio, 16000) < 0.35
        assert np.corrcoef(clip.audio[0, :s].numpy(), src_clip.audio[0].numpy())[0, 1] > 0.95


def test_cli_bad_inputs_give_one_line(model_dir, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    silent = AVClip(torch.zeros(16, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 16000), 16, 16000)
    silent.save(tmp_path / "a.wav")
    cases = [
        (["prompt="], "needs a prompt"),
        (["task=a2v"], "needs an input file"),
        (["task=a2v", f"input={tmp_path / 'missing.wav'}"], "does not exist"),
        (["task=v2a", f"input={tmp_path / 'bad.mp4'}"], "bad.mp4"),
        (["task=v2a", f"input={tmp_path / 'a.wav'}"], "no video"),
        (["prompt=x", "duration=9"], "up to 4 s"),
        (["prompt=x", "task=paint"], "choose one of"),
        (["prompt=x", f"model={tmp_path}"], "no trained model"),
    ]
    for args, message in cases:
        done = generate(model_dir, tmp_path, *args)
        assert done.returncode == 2, (args, done.stderr[-1500:])
        assert message in done.stderr and "Traceback" not in done.stderr, (args, done.stderr[-1500:])
    assert not list(tmp_path.glob("t2av_*")) and not list(tmp_path.glob("*.tmp*"))


def test_shipped_default_model_generates_a_clip_with_both_streams(tmp_path):
    """assets/default loads through AVGenPipeline and makes an mp4 whose two streams have the asked-for length."""
    from pathlib import Path

    pipe = AVGenPipeline.from_pretrained(Path(__file__).resolve().parents[1] / "assets" / "default")
    clip = pipe("a small red circle bounces off the walls with wooden knocks", seed=0, duration=1.0, steps=4)
    clip.save(tmp_path / "default.mp4")
    back = read_clip(tmp_path / "default.mp4")
    assert back.video.shape[0] == round(1.0 * pipe.fps) and back.video.shape[1:3] == pipe.size
    assert back.audio.shape[1] == pytest.approx(pipe.sample_rate, abs=pipe.sample_rate // pipe.fps)
    assert float(back.video.float().std()) > 5.0 and float(back.audio.abs().max()) > 1e-3  # not blank, not silent


def test_cli_bad_output_paths_and_numbers_give_one_line_and_write_nothing(model_dir, tmp_path):
    (tmp_path / "afile").write_text("a regular file")
    (tmp_path / "latin1.txt").write_bytes("un caf\xe9 qui bouge\n".encode("latin-1"))
    cases = [
        ([f"out={tmp_path / 'afile' / 'sub' / 'out.mp4'}", "prompt=x"], "afile is a file, not a directory"),
        (["out=/proc/avgen_test_out.mp4", "prompt=x"], "cannot write in /proc"),
        ([f"out={tmp_path}/", "prompt=x", "cfg_video=nan"], "cfg_video=nan must be a finite number"),
        ([f"out={tmp_path}/", "prompt=x", "steps=0"], "steps=0 must be a whole number >= 1"),
        ([f"out={tmp_path}/", "prompt=x", "cfg_sync=-1"], "cfg_sync=-1.0 must be a finite number >= 0"),
        ([f"out={tmp_path}/", "prompt=x", "duration=nan"], "duration=nan must be a finite number"),
        ([f"out={tmp_path}/", f"prompts_file={tmp_path / 'latin1.txt'}"], "latin1.txt is not UTF-8"),
    ]
    for args, message in cases:
        cmd = [sys.executable, "-m", "avgen.cli.generate", f"model={model_dir}", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr[-1500:])
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and message in lines[-1], (args, done.stderr[-1500:])
        assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "latin1.txt"]  # nothing written
