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
    ap.add_argument("--families", default=None,
                    help="comma-separated avworld families (default: bounce,talk,blink); the timed ones "
                         "(dialogue, scripted) print their script")  # fmt: skip
    args = ap.parse_args(argv)

    families = args.families.split(",") if args.families else None
    world = AVWorld(seed=args.seed, duration=args.duration, fps=args.fps, size=args.size, families=families)
    out = Path(args.out)
    for k in range(args.count):
        t0 = time.perf_counter()
        clip = world[args.index + k]
        path = out if args.count == 1 else out.with_name(f"{out.stem}_{args.index + k}{out.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        clip.save(path)
        print(f"{path}  ({time.perf_counter() - t0:.2f} s)  caption: {clip.caption}")
        for line in clip.meta.get("script", []):  # the timed families' timeline, in avgen.script's form
            span = (
                "" if line["start"] is None else f"{line['start']:.2f}" + (f"-{line['end']:.2f}" if line["end"] else "")
            )
            who = f"{line['speaker']}: " if line["speaker"] else ""
            print("    " + " ".join(x for x in (span, who + line["text"]) if x))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
