#!/usr/bin/env python
"""Encode a dataset once into sharded latents for DiT training.

    python tools/cache_latents.py --video-ae assets/default/video_ae --audio-ae assets/default/audio_ae \
        --out /work/runs/latents --count 20000            # avworld clips 0..19999 (seed 0)
    python tools/cache_latents.py ... --folder /videos     # a folder of real media instead

Shards of --shard-size clips are written atomically; rerunning the same command resumes, keeping the shards that
already hold their clips from the same autoencoders and source.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
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
    chunks = [list(indices[i : i + args.shard_size]) for i in range(0, len(indices), args.shard_size)]
    done = sum(1 for k, ids in enumerate(chunks) if shard_done(shard_path(out, k), ids, hashes, source))
    if done:
        print(f"resuming: {done} of {len(chunks)} shard(s) in {out} are complete")
    bar = tqdm(total=len(indices), initial=0, desc="encoding", unit="clip")
    with torch.no_grad():
        for k, ids in enumerate(chunks):
            if shard_done(shard_path(out, k), ids, hashes, source):
                bar.update(len(ids))
                continue
            buf: dict[str, list] = {"video": [], "audio": [], "captions": [], "metas": []}
            for j in range(0, len(ids), args.batch):
                batch = ids[j : j + args.batch]
                b = collate_clips([data[i] for i in batch])
                buf["video"].append(video_ae.encode(b["video"]))
                buf["audio"].append(audio_ae.encode(b["audio"]))
                buf["captions"] += b["captions"]
                buf["metas"] += [m | {"index": i} for m, i in zip(b["meta"], batch, strict=True)]
                bar.update(len(batch))
            write_shard(shard_path(out, k), torch.cat(buf["video"]), torch.cat(buf["audio"]), buf["captions"],
                        buf["metas"], hashes, source)  # fmt: skip
    bar.close()
    for extra in sorted(out.glob("shard_*.safetensors"))[len(chunks) :]:  # from an earlier, longer run
        extra.unlink()
        print(f"removed {extra}: beyond the {len(chunks)} shard(s) of this cache")
    print(f"wrote {len(chunks) - done} shard(s) of latents ({len(chunks)} in all) for {len(indices)} clips to {out}")
    return 0


def shard_path(out: Path, k: int) -> Path:
    return out / f"shard_{k:05d}.safetensors"


def shard_done(path: Path, ids: list[int], hashes: dict[str, str], source: dict[str, str]) -> bool:
    """Whether `path` already holds exactly these clips, encoded by these AEs from this source (a rerun resumes)."""
    if not path.is_file():
        return False
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        indices = [m.get("index") for m in json.loads(meta.get("meta", "[]"))]
    except Exception:  # noqa: BLE001 - unreadable or truncated (SafetensorError is no OSError): encode it again
        return False
    same_source = all(meta.get(key) == value for key, value in source.items())
    same_aes = meta.get("video_ae_hash") == hashes["video"] and meta.get("audio_ae_hash") == hashes["audio"]
    return same_source and same_aes and indices == ids


if __name__ == "__main__":
    raise SystemExit(main())
