#!/usr/bin/env python
"""Encode a dataset once into sharded latents for DiT training.

    python tools/cache_latents.py --video-ae assets/default/video_ae --audio-ae assets/default/audio_ae \
        --out /work/runs/latents --count 20000            # avworld clips 0..19999 (seed 0)
    python tools/cache_latents.py ... --folder /videos     # a folder of real media instead
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from avgen.autoencoders import load, weights_hash
from avgen.data import AVWorld, MediaFolder, collate_clips
from avgen.data.avworld.world import WORLD_VERSION
from avgen.data.latents import write_shard


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video-ae", required=True)
    ap.add_argument("--audio-ae", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0, help="first clip index")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--folder", default=None, help="a folder of real media instead of the avworld")
    ap.add_argument(
        "--families",
        default=None,
        help="avworld families drawn from, comma-separated; repeat one to weight it up (talk,talk,bounce)",
    )
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    try:
        video_ae, audio_ae = load(args.video_ae), load(args.audio_ae)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fps, sr = float(video_ae.geometry.input_rate), int(audio_ae.geometry.input_rate)
    if args.folder:
        data = MediaFolder(args.folder, args.duration, fps, sr, size=args.size, train=False)
        indices = range(min(args.count, len(data)))
    else:
        families = args.families.split(",") if args.families else None
        try:
            data = AVWorld(seed=args.seed, duration=args.duration, fps=fps, size=args.size, sample_rate=sr,
                           families=families)  # fmt: skip
        except ValueError as e:
            print(f"error: --families: {e}", file=sys.stderr)
            return 2
        indices = range(args.start, args.start + args.count)
    hashes = {"video": weights_hash(video_ae), "audio": weights_hash(audio_ae)}
    source = {"source": "folder"} if args.folder else {"source": "avworld", "world_version": str(WORLD_VERSION)}
    out = Path(args.out)
    buf: dict[str, list] = {"video": [], "audio": [], "captions": [], "metas": []}
    shard = 0
    bar = tqdm(total=len(indices), desc="encoding", unit="clip")
    batch_ids = [list(indices[i : i + args.batch]) for i in range(0, len(indices), args.batch)]
    with torch.no_grad():
        for ids in batch_ids:
            b = collate_clips([data[i] for i in ids])
            buf["video"].append(video_ae.encode(b["video"]))
            buf["audio"].append(audio_ae.encode(b["audio"]))
            buf["captions"] += b["captions"]
            buf["metas"] += [m | {"index": i} for m, i in zip(b["meta"], ids, strict=True)]
            bar.update(len(ids))
            if len(buf["captions"]) >= args.shard_size or ids is batch_ids[-1]:
                write_shard(out / f"shard_{shard:05d}.safetensors", torch.cat(buf["video"]), torch.cat(buf["audio"]),
                            buf["captions"], buf["metas"], hashes, source)  # fmt: skip
                shard += 1
                buf = {"video": [], "audio": [], "captions": [], "metas": []}
    bar.close()
    print(f"wrote {shard} shard(s) of latents for {len(indices)} clips to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
