"""DiT training on cached latents: the loss falls, and a crashed run resumes bit for bit."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from avgen.autoencoders import SeanetAudioAE, VideoVAE
from avgen.data.latents import LatentShards
from avgen.models.dit import AVDiT
from avgen.objective import FlowObjective
from avgen.tokens import AVTokenLayout
from avgen.train.batches import LatentBatcher, batch_indices
from avgen.train.checkpoint import latest_checkpoint, load_checkpoint
from avgen.train.loop import TrainConfig, train_dit
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
    xv, xa, text, mask, spans = batcher(list(range(n)))
    assert spans is None  # captions only (script_prob=0): untimed
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


def test_compiled_training_matches_eager_and_its_checkpoints_resume_eager(setup, tmp_path):
    obj = FlowObjective()
    cfg = TrainConfig(steps=3, batch_size=4, lr=2e-3, warmup=1, ckpt_every=3, progress=False, log_every=1)
    eager, batcher, n = make(setup)
    train_dit(eager, obj, batcher, n, cfg, tmp_path / "eager")
    compiled, batcher, n = make(setup)
    train_dit(compiled, obj, batcher, n, dataclasses.replace(cfg, compile=True), tmp_path / "compiled")

    def losses(run: str) -> list[float]:
        return [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert losses("compiled") == pytest.approx(losses("eager"), rel=1e-4)  # the same maths, fused
    state = load_checkpoint(latest_checkpoint(tmp_path / "compiled" / "checkpoints"))
    assert list(state["model"]) == list(eager.state_dict())  # plain keys: eager code resumes and exports it
    resumed, batcher, n = make(setup)
    train_dit(resumed, obj, batcher, n, dataclasses.replace(cfg, steps=4), tmp_path / "compiled")
    assert len(losses("compiled")) == 4


def test_cli_trains_and_exports(setup, tmp_path):
    import subprocess
    import sys

    shards, *_ = setup
    root = shards.dir.parent
    cmd = [sys.executable, "-m", "avgen.cli.train", f"latents={shards.dir}", f"video_ae.path={root / 'v'}",
           f"audio_ae.path={root / 'a'}", "model.width=32", "model.depth=1", "model.heads=2", "trainer.steps=3",
           "trainer.batch_size=2", "trainer.progress=false", "trainer.log_every=1",
           f"out_dir={tmp_path / 'run'}"]  # fmt: skip
    validation = ["trainer.val_every=3", "validation.probe_clips=2", "sampler.steps=1"]
    done = subprocess.run(cmd + validation, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "export" / "dit" / "model.safetensors").is_file()
    import json

    logged = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged if "loss" in x] == [1, 2, 3]
    probe = [x for x in logged if "val/gap_v2a" in x]  # the dependence probe in the validation pass
    assert [x["step"] for x in probe] == [3] and {"val/gap_a2v", "val/gap_v2a_at_noise/bounce"} <= set(probe[0])
    bad = subprocess.run(
        cmd[:3] + [f"latents={tmp_path / 'none'}"] + cmd[4:6], capture_output=True, text=True, cwd=tmp_path
    )  # no out_dir given: its default must land in tmp_path, not the checkout
    assert bad.returncode == 2 and "cache_latents" in bad.stderr and "Traceback" not in bad.stderr
    # tools/export_checkpoint.py: the newest checkpoint's EMA is what the run exported; --raw is the other set
    from safetensors.torch import load_file

    from avgen.autoencoders.reference import resolve_reference
    from avgen.cli.train import _init_from
    from tools.export_checkpoint import main as export_checkpoint

    exported = load_file(str(tmp_path / "run" / "export" / "dit" / "model.safetensors"))
    for name, raw in (("ema", []), ("raw", ["--raw"]), ("ref", ["--reference", "video,audio"])):
        assert export_checkpoint([str(tmp_path / "run"), "--out", str(tmp_path / name), *raw]) == 0
    assert {p.name for p in (tmp_path / "ref" / "audio_ae").iterdir()} == {"reference.json"}  # not a copy
    assert (resolve_reference(tmp_path / "ref" / "video_ae")[0] / "model.safetensors").is_file()
    assert export_checkpoint([str(tmp_path / "run"), "--out", str(tmp_path / "bad"), "--reference", "vidoe"]) == 2
    assert not (tmp_path / "bad").exists()  # refused before anything was written
    ema, raw = (load_file(str(tmp_path / n / "dit" / "model.safetensors")) for n in ("ema", "raw"))
    assert all(torch.equal(ema[k], exported[k]) for k in exported)
    assert any(not torch.equal(raw[k], exported[k]) for k in exported)
    # init_from: a fine-tune starts from those weights exactly, and a model of another shape is refused

    config = json.loads((tmp_path / "ema" / "dit" / "config.json").read_text())["dit"]
    torch.manual_seed(5)
    model = AVDiT(**config)
    _init_from(model, str(tmp_path / "ema"))
    assert all(torch.equal(v, exported[k]) for k, v in model.state_dict().items())
    wider = AVDiT(**{**config, "width": 64})
    with pytest.raises(ValueError, match="does not fit"):
        _init_from(wider, str(tmp_path / "ema"))
    synced = AVDiT(**{**config, "sync_per_window": 5})  # new zero-init parts keep their start, the rest is loaded
    _init_from(synced, str(tmp_path / "ema"))
    state = synced.state_dict()
    assert all(torch.equal(state[k], v) for k, v in exported.items()) and len(state) > len(exported)


def test_validation_runs_every_val_every_steps_and_is_logged(setup, tmp_path):
    import json

    model, batcher, n = make(setup)
    seen = []

    def validate(ema_model, step):
        seen.append((step, ema_model is not model))
        return {"val/probe": float(step)}

    cfg = TrainConfig(steps=5, batch_size=2, warmup=1, ckpt_every=5, val_every=2, progress=False, log_every=1)
    train_dit(model, FlowObjective(), batcher, n, cfg, tmp_path / "v", validate=validate)
    assert seen == [(2, True), (4, True)]  # on the EMA copy, not the trained weights
    logged = [json.loads(line) for line in (tmp_path / "v" / "metrics.jsonl").read_text().splitlines()]
    assert [d["step"] for d in logged if "val/probe" in d] == [2, 4]


def test_non_finite_gradient_stops_with_the_step_named_and_keeps_the_last_good_checkpoint(setup, tmp_path):
    from avgen.train.checkpoint import list_checkpoints

    obj = FlowObjective()
    calls = {"n": 0}

    def poisoned(net, *args, **kwargs):
        terms = obj(net, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:  # step 2: the loss stays finite, its gradient does not (d sqrt(x) / dx at 0, times 0)
            p = next(net.parameters())
            terms = {**terms, "loss": terms["loss"] + torch.sqrt(p.sum() * 0.0)}
        return terms

    model, batcher, n = make(setup)
    cfg = TrainConfig(steps=4, batch_size=2, warmup=1, ckpt_every=1, progress=False, log_every=1)
    with pytest.raises(FloatingPointError, match="non-finite gradient at step 2"):
        train_dit(model, poisoned, batcher, n, cfg, tmp_path / "g")
    assert [p.name for p in list_checkpoints(tmp_path / "g" / "checkpoints")][-1] == "step_00000002.pt"


def logged(run) -> dict[int, dict]:
    """step -> the last metrics line logged at that step (a resumed run logs again the steps after its checkpoint)."""
    return {d["step"]: d for d in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in d}


def test_data_workers_train_like_the_main_process_and_resume_exactly(setup, tmp_path):
    obj = FlowObjective()
    cfg = TrainConfig(steps=4, batch_size=4, grad_accum=2, lr=2e-3, warmup=1, ckpt_every=2, progress=False,
                      log_every=1)  # fmt: skip
    here, batcher, n = make(setup)
    train_dit(here, obj, batcher, n, cfg, tmp_path / "here")
    ahead = dataclasses.replace(cfg, workers=2)
    calls = {"n": 0}

    def crashing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # the first micro-batch of step 3 (0-based), after the step-2 checkpoint
            raise RuntimeError("crash")
        return obj(*args, **kwargs)

    crashed, batcher, n = make(setup)
    with pytest.raises(RuntimeError, match="crash"):
        train_dit(crashed, crashing, batcher, n, ahead, tmp_path / "ahead")
    assert sorted(logged(tmp_path / "ahead")) == [1, 2, 3]
    resumed, batcher, n = make(setup)
    train_dit(resumed, obj, batcher, n, ahead, tmp_path / "ahead")  # the stream starts at the resumed step
    want, got = logged(tmp_path / "here"), logged(tmp_path / "ahead")
    assert [got[s]["loss"] for s in range(1, 5)] == [want[s]["loss"] for s in range(1, 5)]  # step for step, exactly
    for (name, a), b in zip(here.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_on_the_fly_training_skips_and_counts_corrupt_files(setup, tmp_path, caplog):
    """ClipBatcher over a real folder with 4 unreadable files among 7: training runs, each bad file is skipped once
    and warned about once, and data-loader workers (which skip files in their own copies) give the same tensors,
    count and warnings."""
    import logging

    from avgen.data import MediaFolder
    from avgen.train.batches import ClipBatcher
    from tests.media_factory import media_folder_with_bad_files

    _, layout, video, audio = setup
    root = media_folder_with_bad_files(tmp_path / "media")
    cfg = TrainConfig(steps=3, batch_size=2, warmup=1, ckpt_every=3, progress=False, log_every=1)
    for workers in (0, 2):
        caplog.clear()
        data = MediaFolder(root, duration=2.0, fps=16, sample_rate=16000, size=64, max_skip_ratio=0.6)
        torch.manual_seed(1)
        model = AVDiT(layout.pv, layout.pa, width=32, depth=1, heads=2, text_dim=8)
        batcher = ClipBatcher(data, layout, video, audio, HashText(), "cpu")
        with caplog.at_level(logging.WARNING, logger="avgen.data.folder"):
            last = train_dit(model, FlowObjective(), batcher, len(batcher), dataclasses.replace(cfg, workers=workers),
                             tmp_path / f"run{workers}")  # fmt: skip
        assert torch.isfinite(torch.tensor(last["loss"]))
        assert data.num_skipped == 4 and len(data) == 7  # bad items are replaced deterministically, not dropped
        assert last["data/skipped_files"] == 4 and logged(tmp_path / f"run{workers}")[3]["data/skipped_files"] == 4
        assert sorted(r.args[0] for r in caplog.records) == sorted(data.skipped)  # one warning each
    here, ahead = logged(tmp_path / "run0"), logged(tmp_path / "run2")
    assert [ahead[s]["loss"] for s in (1, 2, 3)] == pytest.approx([here[s]["loss"] for s in (1, 2, 3)], abs=1e-6)
