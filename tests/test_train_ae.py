"""AE training: the loss falls, resume is exact, the CLI runs end to end, checkpoints survive crashes."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from avgen.autoencoders import load
from avgen.autoencoders.losses import AudioAELoss, VideoAELoss
from avgen.autoencoders.video import VideoVAE
from avgen.data.avworld import AVWorld
from avgen.train.ae_loop import AETrainConfig, make_batch, train_autoencoder
from avgen.train.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def small_video_ae() -> VideoVAE:
    torch.manual_seed(0)
    return VideoVAE(latent_channels=8, width=16, mults=[1, 2, 2], blocks=1, latent_blocks=1)


def test_training_lowers_the_loss_on_a_fixed_batch(tmp_path):
    clip = AVWorld(seed=3, families=["bounce"])[0]
    data = [clip] * 4  # one clip: a fixed batch
    cfg = AETrainConfig(steps=60, batch_size=2, lr=3e-3, warmup=5, crop_frames=4, ckpt_every=1000,
                        stats_batches=1, progress=False)  # fmt: skip
    ae, loss_fn = small_video_ae(), VideoAELoss()
    x = make_batch(data, "video", 0, cfg, ae.geometry)

    def loss_now() -> float:
        torch.manual_seed(123)
        with torch.no_grad():
            return float(loss_fn(ae, x)["loss"])

    before = loss_now()
    train_autoencoder(ae, loss_fn, data, cfg, tmp_path)
    after = loss_now()
    assert after <= 0.7 * before, (before, after)
    exported = load(tmp_path / "export")
    assert exported.latent_std.min() > 0 and not torch.equal(exported.latent_std, torch.ones_like(exported.latent_std))


def test_data_workers_train_exactly_like_the_main_process(tmp_path):
    data = AVWorld(seed=1)
    cfg = AETrainConfig(steps=3, batch_size=2, crop_frames=4, ckpt_every=3, stats_batches=1, progress=False, warmup=1)
    here = small_video_ae()  # the same initial weights (the posterior noise is drawn per clip)
    train_autoencoder(here, VideoAELoss(), data, cfg, tmp_path / "a")
    ahead = small_video_ae()
    train_autoencoder(ahead, VideoAELoss(), data, dataclasses.replace(cfg, workers=1), tmp_path / "b")
    for (name, a), b in zip(here.state_dict().items(), ahead.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


class Crash(Exception):
    pass


def test_resume_continues_bit_for_bit(tmp_path):
    data = AVWorld(seed=1)
    cfg = AETrainConfig(steps=6, batch_size=2, crop_frames=4, ckpt_every=3, stats_batches=1, progress=False, warmup=2)
    straight = small_video_ae()
    train_autoencoder(straight, VideoAELoss(), data, cfg, tmp_path / "a")

    calls = {"n": 0}
    base_loss = VideoAELoss()

    def crashing(ae, x, noise=None):
        calls["n"] += 1
        if calls["n"] == 5:  # dies during step 5, after the step-3 checkpoint
            raise Crash()
        return base_loss(ae, x, noise)

    interrupted = small_video_ae()
    with pytest.raises(Crash):
        train_autoencoder(interrupted, crashing, data, cfg, tmp_path / "b")
    assert latest_checkpoint(tmp_path / "b" / "checkpoints").name == "step_00000003.pt"
    resumed = small_video_ae()
    train_autoencoder(resumed, VideoAELoss(), data, cfg, tmp_path / "b")
    state = load_checkpoint(latest_checkpoint(tmp_path / "b" / "checkpoints"))
    assert state["step"] == 6
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    opt_a = load_checkpoint(latest_checkpoint(tmp_path / "a" / "checkpoints"))["optimizer"]["state"]
    for k in opt_a:
        assert torch.equal(opt_a[k]["exp_avg"], state["optimizer"]["state"][k]["exp_avg"])


def test_checkpoints_are_atomic_and_pruned(tmp_path, monkeypatch):
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, {"w": torch.full((3,), float(step))}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003.pt", "step_00000004.pt"]

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("killed mid-save")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 5, {"w": torch.zeros(3)}, keep=2)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path).name == "step_00000004.pt"
    assert torch.equal(load_checkpoint(latest_checkpoint(tmp_path))["w"], torch.full((3,), 4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_00000003.pt", "step_00000004.pt"]


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    g = torch.Generator().manual_seed(5)
    state = capture_rng_state({"noise": g})
    expected = (torch.rand(3), torch.rand(2, generator=g))
    save_checkpoint(tmp_path, 1, {"rng": state})
    torch.rand(10)
    restore_rng_state(load_checkpoint(tmp_path / "step_00000001.pt")["rng"], {"noise": g})
    assert torch.equal(torch.rand(3), expected[0]) and torch.equal(torch.rand(2, generator=g), expected[1])


def test_audio_loss_terms():
    from avgen.autoencoders.audio import SeanetAudioAE

    ae = SeanetAudioAE(latent_channels=4, n_filters=4)
    terms = AudioAELoss(sample_rate=16000)(ae, AVWorld()[0].audio[None, :, :16000])
    assert {"loss", "stft", "mel", "l1", "kl"} <= set(terms) and torch.isfinite(terms["loss"])


def test_cli_debug_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "avgen.cli.train_ae", "ae=audio_tiny", "debug=ae_cpu", "ae.model.n_filters=4",
           f"out_dir={out}"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3] and all("mel" in x for x in lines)
    assert load(out / "export").geometry.latent_rate == 40
    # validation every 2 steps: the round-trip report is logged and the training is unchanged
    val = subprocess.run(cmd[:-1] + [f"out_dir={tmp_path / 'val'}", "trainer.val_every=2", "validation.clips=3"],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert val.returncode == 0, val.stderr[-2000:]
    logged = [json.loads(x) for x in (tmp_path / "val" / "metrics.jsonl").read_text().splitlines()]
    reports = [x for x in logged if "val/audio log-mel L1" in x]
    assert [x["step"] for x in reports] == [2] and "val/contacts with an onset (recall)" in reports[0]
    assert [x["loss"] for x in logged if "loss" in x] == [x["loss"] for x in lines]
    bad = subprocess.run(cmd[:3] + ["ae=nonexistent"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "nonexistent" in bad.stderr and "Traceback" not in bad.stderr


def test_two_identical_runs_export_equal_weights(tmp_path):
    """avgen-train-ae seeds before it builds the model: the same command gives the same weights (it did not)."""
    from hydra import compose, initialize_config_dir
    from safetensors.torch import load_file

    from avgen.cli.common import CONFIG_DIR
    from avgen.cli.train_ae import run

    exported = []
    for name in ("a", "b"):
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = compose("train_ae", overrides=["ae=audio_tiny", "debug=ae_cpu", "ae.model.n_filters=4",
                                                 "trainer.steps=2", f"out_dir={tmp_path / name}"])  # fmt: skip
        torch.manual_seed(len(exported) + 1)  # whatever the caller's RNG state
        run(cfg)
        exported.append(load_file(str(tmp_path / name / "export" / "model.safetensors")))
    assert exported[0].keys() == exported[1].keys()
    assert all(torch.equal(exported[0][k], exported[1][k]) for k in exported[0])
    # init_from: a run starts from a saved AE of the same class and config, and refuses another config in one line
    from avgen.cli.train_ae import prepare
    from avgen.errors import InputError

    base = ["ae=audio_tiny", "debug=ae_cpu", "trainer.steps=2", f"init_from={tmp_path / 'a' / 'export'}"]
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        fine = prepare(compose("train_ae", overrides=base + ["ae.model.n_filters=4", f"out_dir={tmp_path / 'c'}"]))
        assert all(torch.equal(v, exported[0][k]) for k, v in fine.ae.state_dict().items())
        with pytest.raises(InputError, match="init_from=.*n_filters"):
            prepare(compose("train_ae", overrides=base + ["ae.model.n_filters=8", f"out_dir={tmp_path / 'd'}"]))
        # init_fresh=[decoder]: another decoder type starts fresh while the encoder keeps the saved weights
        istft = base + ["ae.model.n_filters=4", "ae.model.decoder=istft", "init_fresh=[decoder]"]
        new = prepare(compose("train_ae", overrides=istft + [f"out_dir={tmp_path / 'e'}"]))
        enc = {k: v for k, v in new.ae.state_dict().items() if k.startswith("encoder.")}
        assert enc and all(torch.equal(v, exported[0][k]) for k, v in enc.items())
        assert not any(k.startswith("decoder.") and k in exported[0] for k in new.ae.state_dict())
        for extra, match in ((["init_fresh=[decoder]", "ae.model.n_filters=8"], "lacks or reshapes.*encoder"),
                             (["init_fresh=[vocoder]", "ae.model.n_filters=4"], "vocoder.*choose from")):  # fmt: skip
            with pytest.raises(InputError, match=match):
                prepare(compose("train_ae", overrides=base + extra + [f"out_dir={tmp_path / 'f'}"]))


def test_colour_permute_shuffles_channels_of_the_same_crops():
    """trainer.colour_permute=1 gives every crop of the plain batch with its RGB channels permuted (the crop offsets
    are drawn first, so they do not move); 0 leaves the batch as it was."""
    data, geometry = AVWorld(seed=1), small_video_ae().geometry
    cfg = AETrainConfig(batch_size=4, crop_frames=4)
    plain = make_batch(data, "video", 2, cfg, geometry)  # (4, 3, 4, 64, 64)
    shuffled = make_batch(data, "video", 2, dataclasses.replace(cfg, colour_permute=1.0), geometry)
    moved = 0
    for p, s in zip(plain, shuffled, strict=True):
        perms = [
            q for q in ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)) if torch.equal(p[list(q)], s)
        ]
        assert perms, "a permuted crop is a channel permutation of the plain one"
        moved += (0, 1, 2) not in perms
    assert moved >= 2
    assert torch.equal(plain, make_batch(data, "video", 2, dataclasses.replace(cfg, colour_permute=0.0), geometry))


def test_a_global_batch_and_its_noise_do_not_depend_on_the_split():
    from avgen.errors import InputError
    from avgen.train.ae_loop import check_config, posterior_noise

    data, ae = AVWorld(seed=1), small_video_ae()
    cfg = AETrainConfig(batch_size=4, crop_frames=4)
    whole = make_batch(data, "video", 3, cfg, ae.geometry)  # (4, 3, 4, 64, 64)
    halves = [make_batch(data, "video", 3, cfg, ae.geometry, rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(whole, torch.cat(halves))
    noise = posterior_noise(ae, whole, 0, 3, 12)
    assert noise.shape == (4, *ae.encode_dist(whole[:1])[0].shape[1:])
    assert torch.equal(
        noise, torch.cat([posterior_noise(ae, whole[:2], 0, 3, 12), posterior_noise(ae, whole[2:], 0, 3, 14)])
    )
    # every loss term is a mean over clips: the mean of the halves' losses is the whole batch's (same noise)
    from avgen.autoencoders.audio import SeanetAudioAE

    sound = SeanetAudioAE(latent_channels=4, n_filters=4)
    clips = torch.stack([data[i].audio[:, :4000] for i in range(4)])  # (4, 1, 4000)
    for model, loss_fn, x in ((ae, VideoAELoss(foreground=2.0), whole), (sound, AudioAELoss(events=2.0), clips)):
        eps = posterior_noise(model, x, 0, 3, 12)
        terms = loss_fn(model, x, eps)
        halves = [loss_fn(model, x[h], eps[h]) for h in (slice(0, 2), slice(2, 4))]
        for k in terms:
            mean = (halves[0][k] + halves[1][k]) / 2
            assert torch.allclose(terms[k], mean, rtol=1e-5, atol=1e-7), (k, terms[k], mean)
    with pytest.raises(InputError, match="batch_size=3 .* multiple of 2"):
        check_config(dataclasses.replace(cfg, batch_size=3), 2)


TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2")
TINY = {"video": ["ae=video_tiny", "ae.model.width=8", "ae.model.latent_channels=4", "trainer.crop_frames=4"],
        "audio": ["ae=audio_tiny", "ae.model.n_filters=4", "trainer.crop_seconds=0.25"]}  # fmt: skip


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_two_rank_ddp_equals_one_process_and_resumes_bit_for_bit(tmp_path, modality):
    """The global batch of 4 as 1 x 4 and as 2 gloo ranks x 2 (torchrun): losses within 1e-5 relative and exported
    weights within 1e-5 (float summation order); the 2-rank run resumed from its step-2 checkpoint ends with the
    weights of its uninterrupted run, bit for bit. SGD, not AdamW: Adam turns the summation-order noise of gradients
    that are ~0 (biases before a norm) into steps of ~lr (measured: 1e-3 in two decoder biases, losses within 1e-7)."""
    from hydra import compose, initialize_config_dir
    from safetensors.torch import load_file

    from avgen.cli.common import CONFIG_DIR
    from avgen.cli.train_ae import run
    from tests.test_train_robust import ENV

    overrides = [*TINY[modality], "debug=ae_cpu", "trainer.steps=4", "trainer.batch_size=4", "trainer.ckpt_every=2",
                 "optim._target_=torch.optim.SGD", "~optim.betas", "~optim.fused"]  # fmt: skip

    def results(out):
        lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return {d["step"]: d["loss"] for d in lines}, load_file(str(out / "export" / "model.safetensors"))

    def two_ranks(out):
        cmd = [*TORCHRUN, "-m", "avgen.cli.train_ae", *overrides, f"out_dir={out}"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        return results(out)

    one, two = tmp_path / "one", tmp_path / "two"
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        run(compose("train_ae", overrides=[*overrides, f"out_dir={one}"]))  # one process: here
    (loss_a, a), (loss_b, b) = results(one), two_ranks(two)
    assert loss_a.keys() == loss_b.keys() == {1, 2, 3, 4}
    assert all(abs(loss_a[s] - loss_b[s]) <= 1e-5 * abs(loss_a[s]) for s in loss_a), (loss_a, loss_b)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, worst
    assert (two / "ranks" / "rank1.log").read_text().startswith("step 1 ")
    state = load_checkpoint(latest_checkpoint(two / "checkpoints"))
    assert len(state["rng_ranks"]) == 2 and state["world_size"] == 2
    for path in [latest_checkpoint(two / "checkpoints"), two / "export" / "model.safetensors"]:
        path.unlink()  # back to the step-2 checkpoint
    _, resumed = two_ranks(two)
    assert all(torch.equal(resumed[k], b[k]) for k in b)
