#!/usr/bin/env python
"""Render clips of the procedural audio-visual world to mp4 (H.264 + AAC), with their captions."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from avgen.data.avworld import AVWorld


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="outputs/avworld_demo.mp4", help="mp4 path (+ index if --count > 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--index", type=int, default=0, help="first clip index")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--fps", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args(argv)

    world = AVWorld(seed=args.seed, duration=args.duration, fps=args.fps, size=args.size)
    out = Path(args.out)
    for k in range(args.count):
        t0 = time.perf_counter()
        clip = world[args.index + k]
        path = out if args.count == 1 else out.with_name(f"{out.stem}_{args.index + k}{out.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        clip.save(path)
        print(f"{path}  ({time.perf_counter() - t0:.2f} s)  caption: {clip.caption}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
