"""Issue 20's done-when, end to end through the console entry points: a tiny random diffusers AutoencoderKLWan and a
tiny transformers DacModel, saved with save_pretrained to local directories, named in avgen-train (experiment=
wan_dac16k shrunk to CPU size, on latents cached by tools/cache_latents.py as the preset says, the VAE referenced
rather than copied) and avgen-generate with the export: an mp4 whose frames and samples are what the declared
geometry gives (Wan: 1 + 4k frames at 16 fps; DAC: 320 samples per latent at 16 kHz)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from avgen.autoencoders import load
from avgen.media import read_clip
from avgen.tokens import ClipFormat
from tools.cache_latents import main as cache_latents

REPO = Path(__file__).resolve().parents[1]
SECONDS, SIZE = 1.3125, 32  # 21 frames at 16 fps (1 + 4 * 5): 3 windows of video_patch [2, 2, 2]


def _save_tiny_aes(root) -> tuple[str, str]:
    from diffusers import AutoencoderKLWan
    from transformers import DacConfig, DacModel

    torch.manual_seed(0)
    wan, dac = root / "wan_vae", root / "dac_16khz"
    AutoencoderKLWan(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1, latents_mean=[0.0] * 4,
                     latents_std=[1.0] * 4).save_pretrained(wan)  # fmt: skip
    DacModel(DacConfig(encoder_hidden_size=2, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=16, n_codebooks=2,
                       codebook_size=16, codebook_dim=4, sampling_rate=16000)).save_pretrained(dac)  # fmt: skip
    return str(wan), str(dac)


def _run(module: str, *args: str, cwd) -> subprocess.CompletedProcess:
    path = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])  # this checkout's avgen
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_tiny_wan_and_dac_train_and_generate_a_clip(tmp_path):
    wan, dac = _save_tiny_aes(tmp_path)
    lat = tmp_path / "latents"
    assert cache_latents(["--video-ae", wan, "--fps", "16", "--audio-ae", dac, "--out", str(lat), "--count", "4",
                          "--duration", str(SECONDS), "--size", str(SIZE), "--audio-patch", "1"]) == 0  # fmt: skip
    run = tmp_path / "run"
    _run("avgen.cli.train", "experiment=wan_dac16k", "debug=cpu_tiny", f"video_ae.path={wan}", f"audio_ae.path={dac}",
         f"latents={lat}", f"clip.duration={SECONDS}", f"clip.size=[{SIZE},{SIZE}]",
         "model.width=32", "model.depth=1", "trainer.steps=2", "trainer.val_every=0", "export.reference=[video]",
         f"out_dir={run}", cwd=tmp_path)  # fmt: skip
    export = run / "export"
    assert json.loads((export / "video_ae" / "reference.json").read_text())["fps"] == "16"  # the VAE's rate, kept
    video_ae, audio_ae = load(export / "video_ae"), load(export / "audio_ae")
    assert (video_ae.kind, audio_ae.kind) == ("diffusers_wan", "hf_dac")
    config = json.loads((export / "dit" / "config.json").read_text())
    fmt = ClipFormat.derive(video_ae, audio_ae, config["clip"], config["tokens"])
    layout = fmt.layout(video_ae, audio_ae)
    frames, samples = fmt.lengths(video_ae, audio_ae)
    assert (frames, samples) == (21, 65 * 320) and (layout.lv, layout.la) == (3 * 2 * 2, 65)  # 1 + 4 * 5; 50 Hz
    out = tmp_path / "clip.mp4"
    _run("avgen.cli.generate", f"model={export}", "prompt=a small red ball bounces", f"out={out}", "seed=1",
         cwd=tmp_path)  # fmt: skip
    clip = read_clip(out)
    assert (clip.fps, clip.sample_rate, tuple(clip.video.shape[1:3])) == (16, 16000, (SIZE, SIZE))
    assert clip.video.shape[0] == frames  # the Wan frame rule: 1 + 4k frames
    assert clip.audio.shape == (1, round(frames / 16 * 16000))  # the audio spans the video (DAC's tokens end 12 ms
    # short of it: the pipeline generates past the end and cuts, avgen.timeline)
