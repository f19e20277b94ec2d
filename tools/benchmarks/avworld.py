"""Benchmark: avworld generation speed on one thread, overall and per scene family."""

from __future__ import annotations

import time

import torch

from avgen.data.avworld import FAMILIES, AVWorld


def clips_per_second(world: AVWorld, count: int) -> float:
    world[0]  # warm caches
    t0 = time.perf_counter()
    for i in range(1, count + 1):
        world[i]
    return count / (time.perf_counter() - t0)


def run(quick: bool = False) -> list[dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    count = 20 if quick else 200
    try:
        rows = [{"section": "avworld", "metric": "clips/s, all families", "value": clips_per_second(AVWorld(), count),
                 "unit": "clips/s", "note": "2 s, 16 fps, 64x64, 16 kHz mono, 1 thread"}]  # fmt: skip
        for family in FAMILIES:
            rows.append({"section": "avworld", "metric": f"clips/s, {family}",
                         "value": clips_per_second(AVWorld(families=[family]), count // 2), "unit": "clips/s",
                         "note": "same format"})  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return rows
