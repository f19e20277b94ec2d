#!/usr/bin/env python
"""Reconstruction report for a video AE and an audio AE: held-out avworld clips and, optionally, real media.

    python tools/eval_ae.py --video-ae assets/default/video_ae --audio-ae assets/default/audio_ae --count 64 \
        --out outputs/ae_eval.md --png outputs/ae_eval.png [--folder /videos]

Held-out avworld clips use seed 1_000_003, never used in training (seed 0). Video: PSNR on uint8 frames (per clip,
averaged), SSIM, per-object colour error and contrast kept (from the world's object masks), the attributes the
detectors read back, the contacts the video contact detector finds on real frames found again within a frame, and
each palette colour as a static square on grey (large and small); audio: SI-SDR, energy kept below / above 1 kHz,
log-mel L1 (n_fft 1024, hop 256, 64 mel bands, ln of magnitudes >= 1e-5), onsets against the true contacts within a
frame, each impact timbre and beep pitch kept, and onset recall within 10 ms of the original's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from avgen.autoencoders import load
from avgen.data import AVWorld, MediaFolder
from avgen.evaluation import audio_report, decode_audio, decode_video, palette_report, video_report
from avgen.media import AVClip
from avgen.metrics.recon import onset_recall
from avgen.paths import portable_path
from avgen.viz import clip_figure

HELD_OUT_SEED = 1_000_003
FRAME = 1 / 16  # s: "within one frame" at the world's 16 fps


def evaluate(clips, video_ae, audio_ae, masks=None) -> tuple[dict[str, float], list[AVClip]]:
    """Both round trips' reports (avgen.evaluation) on `clips`, with the object masks where the world gives them."""
    videos, audios = decode_video(clips, video_ae), decode_audio(clips, audio_ae)
    masks = masks or [[] for _ in clips]
    report = video_report(clips, videos, masks, FRAME) | audio_report(clips, audios, FRAME)
    report["onset recall @10 ms"] = float(np.mean([onset_recall(c.audio, a, c.sample_rate)
                                                   for c, a in zip(clips, audios, strict=True)]))  # fmt: skip
    recons = [AVClip(v, a, c.fps, c.sample_rate, c.caption, {}) for c, v, a in zip(clips, videos, audios, strict=True)]
    return report, recons


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video-ae", required=True)
    ap.add_argument("--audio-ae", required=True)
    ap.add_argument("--count", type=int, default=64)
    ap.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="avworld seed (777: tools/evaluate.py's held-out)")
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
    world = AVWorld(seed=args.seed, fps=fps, sample_rate=sr)
    sets = {
        f"avworld held-out ({args.count} clips, seed {args.seed})": (
            [world[i] for i in range(args.count)],
            [world.object_masks(i) for i in range(args.count)],
        )
    }
    if args.folder:
        folder = MediaFolder(args.folder, 2.0, fps, sr, size=64, train=False, missing_audio="silence")
        sets[f"real media ({portable_path(args.folder)})"] = ([folder[i] for i in range(len(folder))], None)
    reports, shown = {}, []
    for name, (clips, masks) in sets.items():
        reports[name], recons = evaluate(clips, video_ae, audio_ae, masks)
        for c, r in list(zip(clips, recons, strict=True))[:2]:
            shown += [c, r]
    reports["static avworld colours on grey"] = palette_report(video_ae)
    keys = list(dict.fromkeys(k for r in reports.values() for k in r))
    lines = ["| metric | " + " | ".join(reports) + " |", "|---" * (len(reports) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(f"{r[k]:.3f}" if k in r else "–" for r in reports.values()) + " |" for k in keys]
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
