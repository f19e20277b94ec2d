#!/usr/bin/env python
"""Reconstruction report for a video AE and an audio AE: held-out avworld clips and, optionally, real media.

    python tools/eval_ae.py --video-ae assets/default/video_ae --audio-ae assets/default/audio_ae --count 64 \
        --out assets/default/ae_eval.md --png assets/default/ae_eval.png [--folder /videos]

Held-out avworld clips use seed 1_000_003, never used in training (seed 0). Video: PSNR on uint8 frames (per clip,
averaged) and SSIM; audio: SI-SDR, log-mel L1 (n_fft 1024, hop 256, 64 mel bands, ln of magnitudes >= 1e-5) and
onset recall (share of the original's onsets the reconstruction has within 10 ms).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from avgen.autoencoders import load
from avgen.autoencoders.losses import log_mel_l1
from avgen.data import AVWorld, MediaFolder, collate_clips, video_from_model
from avgen.media import AVClip
from avgen.metrics.recon import onset_recall, psnr, si_sdr, ssim
from avgen.paths import portable_path
from avgen.viz import clip_figure

HELD_OUT_SEED = 1_000_003


@torch.no_grad()
def reconstruct(clip: AVClip, video_ae, audio_ae) -> AVClip:
    batch = collate_clips([clip])
    video = video_ae.decode(video_ae.encode(batch["video"])).clamp(-1, 1)
    audio = audio_ae.decode(audio_ae.encode(batch["audio"])).clamp(-1, 1)
    return AVClip(video_from_model(video[0]), audio[0], clip.fps, clip.sample_rate, clip.caption, {})


def evaluate(clips, video_ae, audio_ae) -> tuple[dict[str, float], list[AVClip]]:
    rows, recons = [], []
    for clip in clips:
        rec = reconstruct(clip, video_ae, audio_ae)
        recons.append(rec)
        rows.append({
            "video PSNR (dB)": psnr(clip.video, rec.video),
            "video SSIM": ssim(clip.video, rec.video),
            "audio SI-SDR (dB)": si_sdr(clip.audio, rec.audio),
            "audio log-mel L1": log_mel_l1(clip.audio[None], rec.audio[None], clip.sample_rate),
            "onset recall @10 ms": onset_recall(clip.audio, rec.audio, clip.sample_rate),
        })  # fmt: skip
    return {k: float(np.mean([float(r[k]) for r in rows])) for k in rows[0]}, recons


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video-ae", required=True)
    ap.add_argument("--audio-ae", required=True)
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--folder", default=None, help="also evaluate windows of the real media in this folder")
    ap.add_argument("--out", default="ae_eval.md")
    ap.add_argument("--png", default="ae_eval.png")
    args = ap.parse_args(argv)
    try:
        video_ae, audio_ae = load(args.video_ae), load(args.audio_ae)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fps, sr = float(video_ae.geometry.input_rate), int(audio_ae.geometry.input_rate)
    world = AVWorld(seed=HELD_OUT_SEED, fps=fps, sample_rate=sr)
    sets = {f"avworld held-out ({args.count} clips)": [world[i] for i in range(args.count)]}
    if args.folder:
        folder = MediaFolder(args.folder, 2.0, fps, sr, size=64, train=False, missing_audio="silence")
        sets[f"real media ({portable_path(args.folder)})"] = [folder[i] for i in range(len(folder))]
    lines, shown = [], []
    for name, clips in sets.items():
        means, recons = evaluate(clips, video_ae, audio_ae)
        if not lines:
            lines = ["| data | " + " | ".join(means) + " |", "|---" * (len(means) + 1) + "|"]
        lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in means.values()) + " |")
        for c, r in list(zip(clips, recons, strict=True))[:2]:
            shown += [c, r]
    table = "\n".join(lines)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(table + "\n")
    titles = [f"{'original' if i % 2 == 0 else 'reconstruction'}: {c.caption or ''}"[:100] for i, c in enumerate(shown)]
    clip_figure(shown, args.png, titles=titles, columns=2)
    print(f"wrote {args.out} and {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
