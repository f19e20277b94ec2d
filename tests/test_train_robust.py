"""avgen-train under stress: a 2-rank torchrun DDP run equals one process, SIGKILL + rerun continues bit for bit,
the NaN guard stops with the step named and keeps the last good checkpoint, bad settings stop before step 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from avgen.autoencoders import SeanetAudioAE, VideoVAE
from avgen.train.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from tools.cache_latents import main as cache_latents

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    torch.manual_seed(0)
    VideoVAE(latent_channels=4, width=8, mults=[1, 1, 1], blocks=1, latent_blocks=1).save(root / "v")
    SeanetAudioAE(latent_channels=4, n_filters=4).save(root / "a")
    assert cache_latents(["--video-ae", str(root / "v"), "--audio-ae", str(root / "a"), "--out", str(root / "lat"),
                          "--count", "8", "--batch", "4"]) == 0  # fmt: skip
    return root


def args(root, out, *extra) -> list[str]:
    return [f"latents={root / 'lat'}", f"video_ae.path={root / 'v'}", f"audio_ae.path={root / 'a'}", "model.width=32",
            "model.depth=1", "model.heads=2", "trainer.batch_size=4", "trainer.warmup=1", "trainer.log_every=1",
            "trainer.progress=false", "text_encoder.max_tokens=8", f"out_dir={out}", *extra]  # fmt: skip


def train(root, out, *extra, launcher=(sys.executable, "-m", "avgen.cli.train"), timeout=300):
    done = subprocess.run([*launcher, *args(root, out, *extra)], capture_output=True, text=True, env=ENV,
                          timeout=timeout)  # fmt: skip
    return done


def weights(out) -> dict[str, torch.Tensor]:
    return load_file(str(out / "export" / "dit" / "model.safetensors"))


def losses(out) -> dict[int, float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {d["step"]: d["loss"] for d in lines if "loss" in d}  # a resumed step's line replaces the killed one's


def grad_norms(out) -> dict[int, float]:
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return {d["step"]: d["grad_norm"] for d in lines if "grad_norm" in d}


def test_two_rank_ddp_with_accumulation_and_resume_equals_one_process(data, tmp_path):
    """The same global batch of 4 as 1 x 4 and as 2 ranks x 2 micro-batches of 1: equal losses, equal pre-clip
    gradient norms (AdamW's updates hide a constant gradient-scale error; the norm does not) and equal weights, also
    after the 2-rank run is resumed from its step-2 checkpoint."""
    one = train(data, tmp_path / "one", "trainer.steps=4", "trainer.ckpt_every=2")
    assert one.returncode == 0, one.stderr[-2000:]
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "avgen.cli.train")  # fmt: skip
    two = tmp_path / "two"
    run = train(data, two, "trainer.steps=4", "trainer.ckpt_every=2", "trainer.grad_accum=2", launcher=torchrun)
    assert run.returncode == 0, run.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(two)
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, worst  # equal up to float summation order
    for ours, theirs in ((losses(tmp_path / "one"), losses(two)), (grad_norms(tmp_path / "one"), grad_norms(two))):
        assert ours.keys() == theirs.keys() == {1, 2, 3, 4}
        assert all(abs(ours[s] - theirs[s]) <= 1e-5 * max(1.0, abs(ours[s])) for s in ours), (ours, theirs)
    assert (two / "ranks" / "rank1.log").is_file()
    state = load_checkpoint(latest_checkpoint(two / "checkpoints"))
    assert len(state["rng_ranks"]) == 2 and state["world_size"] == 2
    for path in [*list_checkpoints(two / "checkpoints")[-1:], two / "export" / "dit" / "model.safetensors"]:
        path.unlink()  # back to the step-2 checkpoint
    run = train(data, two, "trainer.steps=4", "trainer.ckpt_every=2", "trainer.grad_accum=2", launcher=torchrun)
    assert run.returncode == 0, run.stderr[-3000:]
    assert max(float((a[k] - weights(two)[k]).abs().max()) for k in a) < 1e-5
    assert all(abs(grad_norms(tmp_path / "one")[s] - grad_norms(two)[s]) <= 1e-5 for s in (3, 4))
    odd = train(data, tmp_path / "odd", "trainer.steps=3", "trainer.batch_size=3", launcher=torchrun)
    assert odd.returncode != 0 and "multiple of 2" in odd.stderr


def test_sigkill_then_rerun_continues_bit_for_bit(data, tmp_path):
    common = ("trainer.steps=6", "trainer.ckpt_every=2", "trainer.grad_accum=2")
    straight = train(data, tmp_path / "straight", *common)
    assert straight.returncode == 0, straight.stderr[-2000:]
    # the same run, killed with SIGKILL right after step 3 was logged (one step past the step-2 checkpoint)
    killer = ("import os, signal, avgen.train.logging as L; log = L.MetricsLogger.log\n"
              "def log_then_die(self, step, m):\n    log(self, step, m)\n"
              "    if step == 3: os.kill(os.getpid(), signal.SIGKILL)\n"
              "L.MetricsLogger.log = log_then_die\nfrom avgen.cli.train import main\nmain()")  # fmt: skip
    killed = train(data, tmp_path / "killed", *common, launcher=(sys.executable, "-c", killer))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [p.name for p in list_checkpoints(tmp_path / "killed" / "checkpoints")] == ["step_00000002.pt"]
    # what a kill during a write leaves (atomic_path's hidden temporaries), beside a file of the user's own
    left = [tmp_path / "killed" / "checkpoints" / ".step_00000004.1a2b3c4d.tmp.pt",
            tmp_path / "killed" / "export" / "dit" / ".model.deadbeef.tmp.safetensors"]  # fmt: skip
    mine = tmp_path / "killed" / "checkpoints" / "notes.tmp.pt"
    for f in [*left, mine]:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"half a file")
    resumed = train(data, tmp_path / "killed", *common)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-2000:]
    assert not any(f.exists() for f in left) and mine.exists()
    said = resumed.stdout + resumed.stderr  # the trainers log (Hydra: to the console and the run's log file)
    assert "removed 2 temporary file(s)" in said and ".step_00000004.1a2b3c4d.tmp.pt" in said
    assert losses(tmp_path / "straight") == losses(tmp_path / "killed")  # float-equal, every step
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_nan_guard_names_the_step_and_keeps_the_last_good_checkpoint(data, tmp_path):
    poison = ("import torch, avgen.objective as O; call = O.FlowObjective.__call__\n"
              "def bad(self, *a, **k):\n    out = call(self, *a, **k)\n"
              "    if a[-1][0][1] == 3: out['loss'] = out['loss'] * float('nan')\n    return out\n"
              "O.FlowObjective.__call__ = bad\nfrom avgen.cli.train import main\nmain()")  # fmt: skip
    done = train(data, tmp_path / "nan", "trainer.steps=6", "trainer.ckpt_every=2",
                 launcher=(sys.executable, "-c", poison))  # fmt: skip
    assert done.returncode == 2 and "non-finite loss at step 3" in done.stderr and "Traceback" not in done.stderr
    ckpts = list_checkpoints(tmp_path / "nan" / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000002.pt"]
    assert torch.isfinite(load_checkpoint(ckpts[0])["model"]["in_video.weight"]).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("trainer.batch_size=3", "trainer.grad_accum=2"), "multiple of 2"),
        (("latents=/no/such/dir",), "no latent shards"),
        (("video_ae.path=/no/such/ae",), "/no/such/ae"),
        (("clip.size=[60,60]",), "frame size 60x60 does not fit"),
        (("tokens.audio_patch=3",), "whole number"),
        (("init_from=/no/model",), "init_from=/no/model"),
        (("trainer.batch_size=0",), "trainer.batch_size=0 is out of range"),
        (("trainer.grad_accum=0",), "trainer.grad_accum=0 is out of range"),
        (("trainer.lr=nan",), "trainer.lr=nan is not a finite number"),
    ],
)
def test_bad_settings_stop_before_the_first_step(data, tmp_path, extra, message):
    done = train(data, tmp_path / "bad", "trainer.steps=2", *extra)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and done.stderr.count("error:") == 1
    assert not (tmp_path / "bad" / "checkpoints").exists()


@pytest.mark.parametrize("trainer", ["avgen.cli.train", "avgen.cli.train_ae"])
def test_folder_of_only_bad_files_or_no_folder_ends_in_one_line(data, tmp_path, trainer):
    from tests.media_factory import media_folder_with_bad_files

    bad = media_folder_with_bad_files(tmp_path / "media")
    for good in bad.glob("good*.mp4"):
        good.unlink()  # 4 unreadable files and nothing else
    cmd = [sys.executable, "-m", trainer, "data=folder", f"out_dir={tmp_path / 'out'}", "trainer.steps=2"]
    if trainer == "avgen.cli.train":
        cmd += ["latents=null", f"video_ae.path={data / 'v'}", f"audio_ae.path={data / 'a'}"]
    for root, message in ((bad, "could not be read"), (tmp_path / "nonexistent", "does not exist")):
        done = subprocess.run([*cmd, f"data.root={root}"], capture_output=True, text=True, env=ENV, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and message in last and str(root) in last, done.stderr[-2000:]
        assert "Traceback" not in done.stderr and "HYDRA_FULL_ERROR" not in done.stderr
        assert not (tmp_path / "out" / "checkpoints").exists()


def test_fsdp2_two_ranks_equal_one_process_and_resume_from_dcp(data, tmp_path):
    import shutil

    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "avgen.cli.train")  # fmt: skip
    common = ("trainer.steps=6", "trainer.ckpt_every=2", "trainer.keep=2")
    one = train(data, tmp_path / "one", *common)
    fsdp = train(data, tmp_path / "fsdp", *common, "trainer.fsdp=true", launcher=torchrun)
    assert one.returncode == 0 and fsdp.returncode == 0, fsdp.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "fsdp")
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, worst
    ckpts = tmp_path / "fsdp" / "checkpoints"
    names = ["step_00000004.dcp", "step_00000004.pt", "step_00000006.dcp", "step_00000006.pt"]
    assert sorted(p.name for p in ckpts.iterdir()) == names  # step 2 pruned, shards and all
    # resume from the DCP shards: drop the step-6 checkpoint and rerun; training continues from step 4
    shutil.rmtree(ckpts / "step_00000006.dcp")
    (ckpts / "step_00000006.pt").unlink()
    shutil.rmtree(tmp_path / "fsdp" / "export")
    resumed = train(data, tmp_path / "fsdp", *common, "trainer.fsdp=true", launcher=torchrun)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout, resumed.stderr[-3000:]
    c = weights(tmp_path / "fsdp")
    assert all(torch.equal(b[k], c[k]) for k in b)


def test_resume_refuses_other_settings_and_multirun_jobs_get_their_own_dirs(data, tmp_path):
    first = train(data, tmp_path / "run", "trainer.steps=2", "trainer.ckpt_every=2")
    assert first.returncode == 0, first.stderr[-2000:]
    other = train(data, tmp_path / "run", "trainer.steps=3", "model.width=48")
    assert other.returncode == 2 and "model.width=48 (the run has 32)" in other.stderr, other.stderr[-2000:]
    more = train(data, tmp_path / "run", "trainer.steps=3", "trainer.ckpt_every=3")
    assert more.returncode == 0 and "resuming with trainer.steps changed: 2 -> 3" in more.stderr, more.stderr[-2000:]
    assert sorted(losses(tmp_path / "run")) == [1, 2, 3]
    multirun = (sys.executable, "-m", "avgen.cli.train", "-m")
    sweep = train(data, tmp_path / "sweep", "trainer.steps=1", "trainer.lr=1e-3,2e-3", launcher=multirun)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    for job, lr in ((0, 1e-3), (1, 2e-3)):
        record = json.loads((tmp_path / "sweep" / str(job) / "run_config.json").read_text())
        assert record["trainer.lr"] == lr and list_checkpoints(tmp_path / "sweep" / str(job) / "checkpoints")


def test_resume_accepts_options_added_since_when_left_empty(tmp_path):
    """A run recorded before an option existed resumes when the option is null / [] / {} now, and not otherwise."""
    from omegaconf import OmegaConf

    from avgen.cli.common import check_resume
    from avgen.errors import InputError

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_00000002.pt").write_bytes(b"")
    (tmp_path / "run_config.json").write_text(json.dumps({"trainer.lr": 0.001}))
    check_resume(OmegaConf.create({"trainer": {"lr": 0.001}, "init_fresh": [], "extra": None}), tmp_path)
    with pytest.raises(InputError, match=r"init_fresh=\['decoder'\] \(the run has None\)"):
        check_resume(OmegaConf.create({"trainer": {"lr": 0.001}, "init_fresh": ["decoder"]}), tmp_path)
