"""Benchmark: tiny video / audio autoencoders. Encode and decode throughput on 2 s clips (clips/s and x realtime) and
training throughput (fwd + bwd + AdamW with the real losses) on the crops the trainer uses: 8 frames of video, 2 s of
audio; peak resident memory of each. Random weights: speed does not depend on what the weights are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from avgen.autoencoders import SeanetAudioAE, VideoVAE
from avgen.autoencoders.losses import AudioAELoss, VideoAELoss
from tools.benchmarks.common import MEMORY_METHOD, best_time, memory_row, peak_rss

SECTION = "autoencoders"
NOTES = [MEMORY_METHOD + "."]
BATCH = 8


def per_second(fn: Callable[[], object], items: int, repeats: int) -> float:
    """Items per second of `fn` (one warm-up call, then the best of `repeats` timed calls)."""
    return items / best_time(fn, repeats)


def train_step_fn(ae: torch.nn.Module, loss_fn, x: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.AdamW(ae.parameters(), lr=1e-4, fused=True)  # as the trainers build it

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(ae, x)["loss"].backward()
        opt.step()

    return step


def ae_rows(name: str, ae, clip: torch.Tensor, crop: torch.Tensor, loss_fn, crop_note: str, repeats: int) -> list[dict]:
    """Rows for one AE: parameters, encode / decode clips/s and x realtime on `clip`, training clips/s on `crop`."""
    seconds = float(clip.shape[2] / ae.geometry.input_rate)
    params = sum(p.numel() for p in ae.parameters())
    ae.eval()
    with torch.no_grad(), peak_rss() as infer_mem:
        z = ae.encode(clip)
        enc = per_second(lambda: ae.encode(clip), clip.shape[0], repeats)
        dec = per_second(lambda: ae.decode(z), clip.shape[0], repeats)
    ae.train()
    with peak_rss() as train_mem:
        train = per_second(train_step_fn(ae, loss_fn, crop), crop.shape[0], repeats)
    note = f"batch {clip.shape[0]}, {seconds:g} s clips, {tuple(clip.shape[1:])} -> {tuple(z.shape[1:])}"
    row = {"section": SECTION}
    return [
        {**row, "metric": f"{name} parameters", "value": params / 1e6, "unit": "M", "note": str(ae.geometry)},
        {**row, "metric": f"{name} encode", "value": enc, "unit": "clips/s", "note": note},
        {**row, "metric": f"{name} encode", "value": enc * seconds, "unit": "x realtime", "note": note},
        {**row, "metric": f"{name} decode", "value": dec, "unit": "clips/s", "note": note},
        {**row, "metric": f"{name} decode", "value": dec * seconds, "unit": "x realtime", "note": note},
        {**row, "metric": f"{name} train (fwd+bwd+AdamW)", "value": train, "unit": "clips/s", "note": crop_note},
        memory_row(SECTION, f"{name} encode + decode", infer_mem, note),
        memory_row(SECTION, f"{name} train", train_mem, crop_note),
    ]


def run(quick: bool = False) -> list[dict]:
    torch.manual_seed(0)
    repeats = 1 if quick else 3
    batch = 2 if quick else BATCH
    video = VideoVAE.preset("tiny")
    v_clip = torch.rand(batch, 3, 32, 64, 64) * 2 - 1  # 2 s at 16 fps, 64x64
    v_crop = torch.rand(batch, 3, 8, 64, 64) * 2 - 1
    v_note = f"batch {batch}, 8-frame 64x64 crops, L1 + gradient L1 + KL"
    audio = SeanetAudioAE.preset("tiny")
    a_clip = torch.randn(batch, 1, 32000).clamp(-1, 1) * 0.5  # 2 s at 16 kHz
    a_note = f"batch {batch}, 2 s crops at 16 kHz, multi-res STFT + log-mel + L1 + KL"
    rows = ae_rows("video_vae tiny", video, v_clip, v_crop, VideoAELoss(), v_note, repeats)
    rows += ae_rows("seanet_audio tiny", audio, a_clip, a_clip, AudioAELoss(), a_note, repeats)
    return rows


if __name__ == "__main__":  # python -m tools.benchmarks.autoencoders
    for r in run(quick=False):
        print(f"{r['metric']:<40} {r['value']:>10.3g} {r['unit']:<11} {r['note']}")
