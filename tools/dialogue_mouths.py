#!/usr/bin/env python
"""Does a model move the speaking mouth in two-speaker scenes? Mean motion in each mouth's box
(avgen.metrics.script.box_motion) inside that speaker's lines and elsewhere, on held-out dialogue clips: the real
clip, the clip through the autoencoders, the model given the script (t2av) and given the real audio (a2v).

    python tools/dialogue_mouths.py --model assets/scripts --count 10      # world seed 778, clip i sampled with 778 + i

A model that draws the mouths moves them more inside their lines than elsewhere (real clips: about 45x); a ratio
near 1 in the a2v row means it does not move them even when the speech is given.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from avgen.data.avworld import AVWorld
from avgen.evaluation import decode_video
from avgen.metrics.script import box_motion, grey
from avgen.pipeline import AVGenPipeline
from avgen.script import Script


def own_frames(script: Script, side: str, n: int, fps: float) -> np.ndarray:
    """(n,) bool: frame differences (frame k to k + 1) whose midpoint lies in one of `side`'s timed lines."""
    t = (np.arange(n) + 1.0) / fps
    own = np.zeros(n, bool)
    for line in script.lines:
        if line.speaker == side and line.start is not None:
            lo, hi = line.span()
            own |= (t >= lo) & (t <= hi)
    return own


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--seed", type=int, default=778, help="avworld seed of the scenes; clip i is sampled with seed + i")
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("--count must be at least 1")
    try:
        pipe = AVGenPipeline.from_pretrained(args.model)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    world = AVWorld(args.seed, duration=pipe.duration, fps=pipe.fps, size=pipe.size, sample_rate=pipe.sample_rate,
                    families=["dialogue"])  # fmt: skip
    sums = {k: ([], []) for k in ("real", "through the AEs", "t2av (script)", "a2v (real audio)")}
    for i in range(args.count):
        real = world[i]
        script = Script.coerce(real.meta["script"])
        with torch.no_grad():
            videos = [real.video, decode_video([real], pipe.video_ae)[0], pipe(script=script, seed=args.seed + i).video,
                      pipe(task="a2v", script=script, audio=real.audio, seed=args.seed + i).video]  # fmt: skip
        for side, box in real.meta["regions"].items():
            for (inside, outside), video in zip(sums.values(), videos, strict=True):
                motion = box_motion(grey(video), box)
                own = own_frames(script, side, len(motion), pipe.fps)
                inside.extend(motion[own].tolist())
                outside.extend(motion[~own].tolist())
    print(f"| {args.model} | in the speaker's lines | elsewhere | ratio |\n|---|---|---|---|")
    for name, (inside, outside) in sums.items():
        a, b = float(np.mean(inside)), float(np.mean(outside))
        print(f"| {name} | {a:.4f} | {b:.4f} | {a / max(b, 1e-9):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
