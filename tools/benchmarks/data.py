"""Benchmark: the DiT trainer's memory as its latent cache grows eightfold (avgen/data/latents.py reads lazily).

A synthetic cache is written here: 10 shards x 1000 clips of random raw latents, shaped as training with the shipped
AEs (assets/default) and the default clip format needs them, carrying those AEs' hashes and the captions and metas
of real avworld clips (32 rendered, cycled), so the headers are as large as a real cache's. The 8x cache is 80 shard
paths, 8 symlinks to each of the 10 files (the reader opens each path as its own shard; the hash checks read headers
only). Each cache is trained on in a fresh process, as avgen-train builds its run (avgen.cli.train.prepare, then
avgen.train.loop.train_dit with experiment=default_cpu): STEPS steps of batch BATCH (checkpoints at the recipe's
cadence, no validation), then the same process reads every clip's video and audio latents once through the trainer's
LatentShards (the reads LatentBatcher makes). Peak RSS is that process's VmHWM (/proc/self/status) after training and
after the read of every clip; os.wait4's ru_maxrss of the child is printed beside it. The 1x and 8x runs alternate,
round after round; the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

SECTION = "data"
SHARDS, CLIPS, COPIES = 10, 1000, 8
NOTES = ["Data: peak RSS (VmHWM) of a fresh training process per cache, 1x and 8x alternating round by round; "
         "median over rounds, min and max beside; target 8x within 10 % of 1x."]  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


def row(metric: str, value, unit: str, note: str) -> dict:
    return {"section": SECTION, "metric": metric, "value": value, "unit": unit, "note": note}


def default_shapes() -> tuple[tuple, tuple, dict[str, str]]:
    """Raw latent shapes (video (c, t, h, w), audio (c, n)) that experiment=default_cpu trains on, derived from the
    shipped AEs and the clip format as avgen.cli.train does, and those AEs' hashes."""
    from avgen.autoencoders import weights_hash
    from avgen.cli.common import load_autoencoder
    from avgen.tokens import ClipFormat
    from tools.benchmarks.trainers import _compose

    cfg = _compose("train", ["experiment=default_cpu"])
    video_ae, audio_ae = load_autoencoder(cfg.video_ae, "video_ae"), load_autoencoder(cfg.audio_ae, "audio_ae")
    layout = ClipFormat.derive(video_ae, audio_ae, cfg.clip, cfg.tokens).layout(video_ae, audio_ae)
    return layout.video_latent, layout.audio_latent, {"video": weights_hash(video_ae), "audio": weights_hash(audio_ae)}


def make_cache(directory: Path, video_shape: tuple, audio_shape: tuple, hashes: dict[str, str]) -> Path:
    """SHARDS shards of CLIPS clips: random latents, the captions and metas of real avworld clips."""
    from avgen.data import AVWorld
    from avgen.data.avworld.world import WORLD_VERSION
    from avgen.data.latents import write_shard

    world = AVWorld(seed=0)
    clips = [world[i] for i in range(32)]
    source = {"source": "avworld", "world_version": str(WORLD_VERSION)}
    g = torch.Generator().manual_seed(0)
    for k in range(SHARDS):
        ids = range(k * CLIPS, (k + 1) * CLIPS)
        metas = [clips[i % 32].meta | {"index": i} for i in ids]
        write_shard(directory / f"shard_{k:05d}.safetensors", torch.randn(CLIPS, *video_shape, generator=g),
                    torch.randn(CLIPS, *audio_shape, generator=g), [clips[i % 32].caption for i in ids], metas,
                    hashes, source)  # fmt: skip
    return directory


def copies(src: Path, dst: Path, k: int) -> Path:
    """dst holding k symlinks to each shard of src, every one its own shard path."""
    dst.mkdir(parents=True)
    files = sorted(src.glob("shard_*.safetensors"))
    for j in range(k):
        for i, f in enumerate(files):
            (dst / f"shard_{j * len(files) + i:05d}.safetensors").symlink_to(f)
    return dst


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def read_all(shards) -> dict:
    """Every clip's video and audio latents once, in order, as LatentBatcher reads them (shards.video[i])."""
    before, total, t0 = _status_mib("VmRSS"), 0.0, time.perf_counter()
    for i in range(len(shards)):
        total += float(shards.video[i].view(-1)[0]) + float(shards.audio[i].view(-1)[0])
    return {"clips": len(shards), "read_s": time.perf_counter() - t0, "read_rise": _status_mib("VmRSS") - before,
            "hwm": _status_mib("VmHWM"), "checksum": total}  # fmt: skip


def child_train(latents: str, out: str, steps: int) -> dict:
    """In the measured process: train as avgen-train does (the recipe's batch), then read every clip once."""
    from avgen.cli.train import prepare
    from avgen.train.loop import train_dit
    from tools.benchmarks.trainers import _compose

    cfg = _compose("train", ["experiment=default_cpu", f"latents={latents}", f"out_dir={out}", f"trainer.steps={steps}",
                             "trainer.val_every=1", "trainer.progress=false", "validation.probe_clips=0"])  # fmt: skip
    r = prepare(cfg)
    marks: list[float] = []  # after each step
    train_dit(r.model, r.objective, r.batcher, len(r.batcher), r.trainer, r.out, info=r.info, optimizer=r.optimizer,
              validate=lambda model, step: marks.append(time.perf_counter()) or {})  # fmt: skip
    step_s = statistics.median(b - a for a, b in zip(marks, marks[1:], strict=False))  # step 1 warms up
    trained = {"step_s": step_s, "batch": r.trainer.batch_size, "hwm_train": _status_mib("VmHWM")}
    return trained | read_all(r.batcher.shards)


def child_read(latents: str, hashes: str) -> dict:
    """In the measured process: open the cache (checking the AE hashes) and read every clip once, nothing else."""
    from avgen.data.latents import LatentShards

    return read_all(LatentShards(latents, hashes=json.loads(hashes)))


def measure(out: Path, *args: str) -> dict:
    """child_train(*args) or child_read(*args) in a fresh process; its ru_maxrss from os.wait4 added."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out.mkdir(parents=True)
    with open(out / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, __file__, "--child", *args], stdout=subprocess.PIPE, stderr=err,
                                env=env, cwd=REPO, text=True)  # fmt: skip
        stdout = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, not by Popen: the child's own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"benchmark child failed ({proc.returncode}): {(out / 'stderr.txt').read_text()[-2000:]}")
    return json.loads(stdout.strip().splitlines()[-1]) | {"ru_maxrss": usage.ru_maxrss / 1024}


def run(quick: bool = False) -> list[dict]:
    rounds, steps = (1, 2) if quick else (2, 3)
    runs: dict[str, dict[str, list[dict]]] = {"1x": {"train": [], "read": []}, "8x": {"train": [], "read": []}}
    with tempfile.TemporaryDirectory(prefix="avgen_bench_data_") as tmp:
        work = Path(tmp)
        video_shape, audio_shape, hashes = default_shapes()
        t0 = time.perf_counter()
        caches = {"1x": make_cache(work / "1x", video_shape, audio_shape, hashes)}
        write_s = time.perf_counter() - t0
        caches["8x"] = copies(caches["1x"], work / "8x", COPIES)
        for r in range(rounds):  # 1x and 8x alternate, so a burst of outside load hits both
            for name, d in caches.items():
                run_dir = work / f"train_{name}_{r}"
                runs[name]["train"].append(measure(run_dir, "train", str(d), str(run_dir / "run"), str(steps)))
                runs[name]["read"].append(measure(work / f"read_{name}_{r}", "read", str(d), json.dumps(hashes)))
    clip_mib = (torch.Size(video_shape).numel() + torch.Size(audio_shape).numel()) * 4 / 2**20
    return rows(runs, steps, clip_mib, f"{SHARDS} x {CLIPS} clips of latents {video_shape} / {audio_shape}, "
                f"written in {write_s:.1f} s")  # fmt: skip


def _spread(values: list[float], fmt: str = ".0f") -> str:
    return f"median of {len(values)} round(s) (min {min(values):{fmt}}, max {max(values):{fmt}})"


def _ratio(runs: dict, mode: str, key: str) -> list[float]:
    return [b[key] / a[key] for a, b in zip(runs["1x"][mode], runs["8x"][mode], strict=True)]


def rows(runs: dict, steps: int, clip_mib: float, cache_note: str) -> list[dict]:
    out = []
    for name, by in runs.items():
        train, read = by["train"], by["read"]
        n, med = train[0]["clips"], lambda rs, k: statistics.median(x[k] for x in rs)
        peaks, times = [x["hwm"] for x in train], [x["step_s"] for x in train]
        out += [
            row(f"peak RSS, training on the {name} cache ({n:,} clips)", med(train, "hwm"), "MiB", f"{_spread(peaks)}; "
                f"VmHWM after {steps} DiT steps of batch {train[0]['batch']} (experiment=default_cpu) and a read of "
                f"every clip in the same process; after the steps alone {med(train, 'hwm_train'):.0f} MiB; wait4 "
                f"ru_maxrss {med(train, 'ru_maxrss'):.0f} MiB; a whole-load reader would hold {n * clip_mib:,.0f} MiB "
                "of latents"),
            row(f"DiT step, {name} cache", statistics.median(times), "s/step", f"{_spread(times, '.2f')} of the "
                "median step after the first"),
            row(f"peak RSS, reading the {name} cache", med(read, "hwm"), "MiB", f"{_spread([x['hwm'] for x in read])}; "
                f"a process that only opens the cache and reads every clip once; VmRSS rose "
                f"{med(read, 'read_rise'):.1f} MiB over the read, at {med(read, 'clips') / med(read, 'read_s'):,.0f} "
                "clips/s"),
        ]  # fmt: skip
    for mode, what in (("train", "training"), ("read", "reading")):
        ratios = _ratio(runs, mode, "hwm")
        out.append(row(f"peak RSS 8x / 1x, {what}", statistics.median(ratios), "x",
                       f"{_spread(ratios, '.3f')}; target <= 1.10; {cache_note}"))  # fmt: skip
    return out


if __name__ == "__main__":
    if sys.argv[1:3] == ["--child", "train"]:
        print(json.dumps(child_train(sys.argv[3], sys.argv[4], int(sys.argv[5]))))
    elif sys.argv[1:3] == ["--child", "read"]:
        print(json.dumps(child_read(sys.argv[3], sys.argv[4])))
    else:
        for r in run(quick="--quick" in sys.argv):
            print(r)
