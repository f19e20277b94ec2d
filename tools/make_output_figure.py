#!/usr/bin/env python
"""The README's picture of generated clips: frames above the spectrogram for each mp4, titled by its metadata.

python tools/make_output_figure.py --inputs outputs/readme     # speech.wav and silent.mp4, the a2v / v2a inputs
python tools/make_output_figure.py outputs/readme/*.mp4 --out assets/default/outputs.png

The inputs: speech.wav is the first 2 s window of recorded human speech (pocketsphinx-testdata's LibriVox readings,
as tools/evaluate.py reads them); silent.mp4 is the first held-out bounce clip (avworld seed 777) with its sound
removed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # run as `python tools/make_output_figure.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from avgen.data import AVWorld  # noqa: E402
from avgen.media import AVClip, read_clip, read_metadata  # noqa: E402
from avgen.script import Script  # noqa: E402
from avgen.viz import clip_figure  # noqa: E402
from tools.evaluate import HELD_OUT_SEED, speech_windows  # noqa: E402


def write_inputs(out: Path, sample_rate: int = 16000, fps: int = 16, size: int = 64) -> list[Path]:
    """speech.wav (recorded speech) and silent.mp4 (a held-out bounce video, no sound) in out."""
    windows, note = speech_windows(1, sample_rate)
    if not windows:
        raise SystemExit(f"no recorded speech for speech.wav: {note} (apt-get install pocketsphinx-testdata)")
    speech = AVClip(torch.zeros(0, size, size, 3, dtype=torch.uint8), windows[0], fps, sample_rate)
    bounce = AVWorld(HELD_OUT_SEED, fps=fps, size=(size, size), sample_rate=sample_rate, families=["bounce"])[0]
    silent = AVClip(bounce.video, torch.zeros_like(bounce.audio), fps, sample_rate, bounce.caption)
    print(f"silent.mp4: {bounce.caption!r}")
    return [speech.save(out / "speech.wav"), silent.save(out / "silent.mp4")]


def title(meta: dict[str, str]) -> str:
    """[task] the prompt (seed s); a clip made from a timed script: its timed lines instead, and the model's hash."""
    head = f"[{meta.get('task', '?')}]"
    if "script" in meta and (script := Script.coerce(json.loads(meta["script"]))).timed:
        lines = " | ".join(str(line) for line in script.in_time_order() if line.timed)
        return f"{head} model {meta.get('model_hash', '?')[:8]}, script: {lines}  (seed {meta.get('seed', '?')})"
    return f"{head} {meta.get('prompt') or '(no prompt)'}  (seed {meta.get('seed', '?')})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mp4s", nargs="*")
    ap.add_argument("--out", help="the figure (PNG)")
    ap.add_argument("--inputs", type=Path, help="write the a2v / v2a inputs (speech.wav, silent.mp4) to this folder")
    args = ap.parse_args(argv)
    if args.inputs:
        for p in write_inputs(args.inputs):
            print(p)
        return 0
    if not args.mp4s or not args.out:
        ap.error("give the mp4s and --out (or --inputs DIR)")
    clips, titles = [], []
    for path in args.mp4s:
        clips.append(read_clip(path))
        titles.append(title(read_metadata(path)))
    print(clip_figure(clips, args.out, frames=10, titles=titles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
