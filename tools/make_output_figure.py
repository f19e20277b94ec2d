#!/usr/bin/env python
"""The README's picture of generated clips: frames above the spectrogram for each mp4, titled by its metadata.

python tools/make_output_figure.py outputs/readme/*.mp4 --out assets/default/outputs.png
"""

from __future__ import annotations

import argparse

from avgen.media import read_clip, read_metadata
from avgen.viz import clip_figure


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mp4s", nargs="+")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    clips, titles = [], []
    for path in args.mp4s:
        clips.append(read_clip(path))
        meta = read_metadata(path)
        titles.append(
            f"[{meta.get('task', '?')}] {meta.get('prompt') or '(no prompt)'}  (seed {meta.get('seed', '?')})"
        )
    print(clip_figure(clips, args.out, frames=10, titles=titles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
