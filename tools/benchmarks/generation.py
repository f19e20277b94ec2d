"""Benchmark: generation real-time factor (compute seconds per second of clip) of AVGenPipeline, text -> audio + video,
for 2, 4 and 8 s clips at 8, 16 and 32 sampling steps: text encoding, the sampler with classifier-free guidance (the
conditional and unconditional passes as one batch of 2; at 16 steps also with sync guidance, a third pass) and both
AE decoders, i.e. what `pipe(prompt)` runs. One more row times the command a user types, `avgen-generate` of one 2 s
clip in a fresh process: Python and torch start-up, model load, sampling at the model's default steps, decoding, mp4.

Without --model the pipeline is a random-weight tiny DiT exported beside the shipped AEs (assets/default) with the
default's clip format; speed does not depend on what the weights are. Clips longer than the trained duration are
timed through the pipeline's own steps (layout, sample_tokens, decode), as `pipe()` refuses more than twice the
trained duration in one window.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from avgen.autoencoders import load
from avgen.model_dir import export_model
from avgen.models.dit import build_dit
from avgen.pipeline import AVGenPipeline
from avgen.tokens import ClipFormat
from tools.benchmarks.common import best_time, memory_row, peak_rss, preset_sync, threads_note

SECTION = "generation"
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "default"
DURATIONS = (2.0, 4.0, 8.0)
STEPS = (8, 16, 32)
PROMPT = "a small red circle bounces off the walls with wooden knocks"
CONFIG = {  # the shipped default's clip format (conf/train.yaml, conf/sampler/euler.yaml)
    "clip": {"duration": 2.0, "size": [64, 64]},
    "tokens": {"video_patch": [1, 2, 2], "audio_patch": 2, "ref_rate": 100.0},
    "text_encoder": {"path": None, "max_tokens": 32},
    "sampler": {"method": "euler", "steps": 16, "shift": 1.0, "cfg_video": 3.0, "cfg_audio": 3.0},
}


def random_model(directory: Path) -> Path:
    """A tiny random-weight DiT with the shipped AEs, exported as a model directory."""
    video_ae, audio_ae = load(ASSETS / "video_ae"), load(ASSETS / "audio_ae")
    layout = ClipFormat.derive(video_ae, audio_ae, CONFIG["clip"], CONFIG["tokens"]).layout(video_ae, audio_ae)
    torch.manual_seed(0)
    dit = build_dit("tiny", layout.pv, layout.pa, layout.per_window, sync=preset_sync())  # as configured
    with torch.no_grad():  # adaLN-Zero would predict zero velocity everywhere; give the network something to say
        for p in dit.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return export_model(dit, directory, CONFIG, video_ae, audio_ae)


def settings_with_cfg(pipe: AVGenPipeline, steps: int):
    s = pipe.settings(steps=steps)
    if s.cfg_video == 1.0 and s.cfg_audio == 1.0:  # guidance off in this model's defaults: time it with guidance on
        s.cfg_video = s.cfg_audio = 3.0
    return s


def run(quick: bool = False, model: str | None = None) -> list[dict]:
    repeats = 1 if quick else 2
    threads = threads_note()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, peak_rss() as mem:
        directory = Path(model) if model else random_model(Path(tmp) / "model")
        pipe = AVGenPipeline.from_pretrained(directory)
        label = f"model {directory}" if model else "random tiny DiT + assets/default AEs"
        for want in DURATIONS:
            seconds = pipe.valid_duration(want)
            layout = pipe.layout(seconds)
            xv, xa = pipe.sample_tokens([PROMPT], layout, 0, sampler=settings_with_cfg(pipe, 2))  # warm-up
            decode = best_time(lambda layout=layout, xv=xv, xa=xa: pipe.decode(xv, xa, layout), repeats, warmup=0)
            for steps in STEPS:
                s = settings_with_cfg(pipe, steps)

                def generate(layout=layout, s=s) -> None:
                    xv, xa = pipe.sample_tokens([PROMPT], layout, 0, sampler=s)
                    pipe.decode(xv, xa, layout)

                for sync in (1.0, 3.0) if steps == 16 else (1.0,):  # 3: sync guidance's extra branch on
                    s.cfg_sync = sync
                    t = best_time(generate, repeats, warmup=0)
                    name = f"t2av {seconds:g} s clip, {steps} steps" + (", sync guidance" if sync != 1.0 else "")
                    rows.append({"section": SECTION, "metric": name, "value": t / seconds, "unit": "s per s of clip",
                                 "note": f"{t:.2f} s; {s.method}, CFG {s.cfg_video:g}/{s.cfg_audio:g}, sync "
                                         f"{s.cfg_sync:g}; {layout.l} tokens; AE decode {decode:.2f} s of it; "
                                         f"{threads}"})  # fmt: skip
        rows.append(cold_start_row(directory, Path(tmp), repeats))
    rows.append(memory_row(SECTION, "generation", mem, f"{label}: loading, then all clips above"))
    return rows


def cold_start_row(directory: Path, tmp: Path, repeats: int) -> dict:
    """Wall time of `avgen-generate` writing one 2 s mp4 from a fresh interpreter (best of `repeats`)."""
    cmd = [sys.executable, "-m", "avgen.cli.generate", f"model={directory}", f"prompt={PROMPT}", f"out={tmp}/cold.mp4"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    best, said = float("inf"), ""
    for _ in range(repeats + 1):  # the first run also warms the page cache (weights, shared libraries)
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode:
            raise RuntimeError(f"avgen-generate failed: {done.stderr.strip()[-500:]}")
        if wall < best:
            best, said = wall, "; ".join(done.stdout.replace(f"{tmp}/", "").split("\n")[-3:]).strip("; ")
    return {
        "section": SECTION,
        "metric": "avgen-generate, one 2 s clip, fresh process",
        "value": best,
        "unit": "s",
        "note": f"wall incl. imports and model load; it printed: {said}; {threads_note()}",
    }


if __name__ == "__main__":
    t0 = time.perf_counter()
    for r in run(quick=True):
        print(r)
    print(f"{time.perf_counter() - t0:.1f} s")
