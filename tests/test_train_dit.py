"""DiT training on cached latents: the loss falls, and a crashed run resumes bit for bit."""

from __future__ import annotations

import pytest
import torch

from avgen.autoencoders import SeanetAudioAE, VideoVAE
from avgen.data.latents import LatentShards
from avgen.models.dit import AVDiT
from avgen.objective import FlowObjective
from avgen.tokens import AVTokenLayout
from avgen.train.loop import LatentBatcher, TrainConfig, batch_indices, train_dit
from tools.cache_latents import main as cache_latents


class HashText:
    """A deterministic stand-in text encoder (no model download in tests): caption -> fixed random states."""

    dim = 8

    def __call__(self, captions):
        states = torch.stack([torch.randn(3, self.dim, generator=torch.Generator().manual_seed(hash(c) % 2**31))
                              for c in captions])  # fmt: skip
        return states, torch.ones(len(captions), 3, dtype=torch.bool)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit")
    torch.manual_seed(0)
    video = VideoVAE(latent_channels=4, width=8, mults=[1, 1, 1], blocks=1, latent_blocks=1)
    audio = SeanetAudioAE(latent_channels=4, n_filters=4)
    video.save(root / "v")
    audio.save(root / "a")
    assert cache_latents(["--video-ae", str(root / "v"), "--audio-ae", str(root / "a"), "--out", str(root / "lat"),
                          "--count", "6", "--batch", "3"]) == 0  # fmt: skip
    shards = LatentShards(root / "lat", video_ae=video, audio_ae=audio)
    layout = AVTokenLayout.from_autoencoders(video, audio, 2.0, (64, 64), audio_patch=2)
    return shards, layout, video, audio


def make(setup):
    shards, layout, video, audio = setup
    torch.manual_seed(1)
    model = AVDiT(layout.pv, layout.pa, width=32, depth=1, heads=2, text_dim=8)
    batcher = LatentBatcher(shards, layout, video, audio, HashText(), "cpu")
    return model, batcher, len(shards)


def test_batches_are_a_pure_function_of_seed_and_step():
    assert batch_indices(3, 4, 6, 0) == batch_indices(3, 4, 6, 0)
    first_epoch = batch_indices(0, 6, 6, 0)
    assert sorted(first_epoch) == list(range(6)) and first_epoch != batch_indices(1, 6, 6, 0)


def test_loss_falls_and_resume_is_exact(setup, tmp_path):
    obj = FlowObjective()
    cfg = TrainConfig(steps=40, batch_size=4, lr=2e-3, warmup=5, ckpt_every=20, progress=False, log_every=10)
    model, batcher, n = make(setup)
    xv, xa, text, mask = batcher(list(range(n)))
    eval_seeds = [(999, 0, i) for i in range(n)]

    def eval_loss() -> float:
        with torch.no_grad():
            return float(obj(model, xv, xa, text, mask, batcher.layout, eval_seeds)["loss"])

    before = eval_loss()
    train_dit(model, obj, batcher, n, cfg, tmp_path / "probe")
    assert eval_loss() < 0.8 * before

    straight, batcher, n = make(setup)
    train_dit(straight, obj, batcher, n, TrainConfig(**{**cfg.__dict__, "steps": 8, "ckpt_every": 4}), tmp_path / "a")

    class Crash(Exception):
        pass

    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise Crash()
        return obj(*args, **kwargs)

    crashed, batcher, n = make(setup)
    short = TrainConfig(**{**cfg.__dict__, "steps": 8, "ckpt_every": 4})
    with pytest.raises(Crash):
        train_dit(crashed, crashing, batcher, n, short, tmp_path / "b")
    resumed, batcher, n = make(setup)
    out = train_dit(resumed, obj, batcher, n, short, tmp_path / "b")
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert out["ema"].model is not resumed


def test_cli_trains_and_exports(setup, tmp_path):
    import subprocess
    import sys

    shards, *_ = setup
    root = shards.dir.parent
    cmd = [sys.executable, "-m", "avgen.cli.train", f"latents={shards.dir}", f"video_ae.path={root / 'v'}",
           f"audio_ae.path={root / 'a'}", "model.width=32", "model.depth=1", "model.heads=2", "trainer.steps=3",
           "trainer.batch_size=2", "trainer.progress=false", "trainer.log_every=1",
           f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "export" / "dit" / "model.safetensors").is_file()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3
    bad = subprocess.run(cmd[:3] + [f"latents={tmp_path / 'none'}"] + cmd[4:6], capture_output=True, text=True)
    assert bad.returncode == 2 and "cache_latents" in bad.stderr and "Traceback" not in bad.stderr
