"""Benchmark: write_clip / read_clip throughput (mp4, H.264 + AAC) at two clip formats."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from avgen.data.avworld import AVWorld
from avgen.media import read_clip, write_clip


def run(quick: bool = False) -> list[dict]:
    rows = []
    reps = 3 if quick else 12
    for fps, size, label in ((16, 64, "2 s 64x64 16 fps"), (25, 256, "2 s 256x256 25 fps")):
        clips = [AVWorld(seed=1, fps=fps, size=size)[i] for i in range(reps)]
        with tempfile.TemporaryDirectory() as tmp:
            paths = [Path(tmp) / f"c{i}.mp4" for i in range(reps)]
            t0 = time.perf_counter()
            for clip, path in zip(clips, paths, strict=True):
                write_clip(clip, path)
            t_write = (time.perf_counter() - t0) / reps
            t0 = time.perf_counter()
            for path in paths:
                read_clip(path, fps=fps, sample_rate=16000, duration=2.0)
            t_read = (time.perf_counter() - t0) / reps
        rows.append({"section": "media", "metric": f"write_clip, {label}", "value": 1 / t_write, "unit": "clips/s",
                     "note": f"{2.0 / t_write:.0f}x real time"})  # fmt: skip
        rows.append({"section": "media", "metric": f"read_clip, {label}", "value": 1 / t_read, "unit": "clips/s",
                     "note": f"{2.0 / t_read:.0f}x real time"})  # fmt: skip
    return rows
