#!/usr/bin/env python
"""Pictures for the README: avworld examples (one clip per scene family), frames above spectrograms."""

from __future__ import annotations

import argparse

from avgen.data.avworld import FAMILIES, AVWorld
from avgen.viz import clip_figure


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="assets/avworld_examples.png")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    world = AVWorld(seed=args.seed, size=96)
    picked = {}
    i = 0
    while len(picked) < len(FAMILIES) or i < 4:
        clip = world[i]
        if clip.meta["family"] not in picked:
            picked[clip.meta["family"]] = clip
        i += 1
    clips = [picked[f] for f in FAMILIES]
    titles = [f"[{c.meta['family']}] {c.caption}" for c in clips]
    print(clip_figure(clips, args.out, frames=10, titles=titles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
