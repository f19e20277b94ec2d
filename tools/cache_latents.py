#!/usr/bin/env python
"""Encode a dataset once into sharded latents for DiT training.

    python tools/cache_latents.py --video-ae assets/default/video_ae --audio-ae assets/default/audio_ae \
        --out /work/runs/latents --count 20000            # avworld clips 0..19999 (seed 0)
    python tools/cache_latents.py ... --folder /videos     # a folder of real media instead
    python tools/cache_latents.py --video-ae weights/wan_vae --fps 16 ...   # a diffusers video VAE (video_ae.fps)
    torchrun --standalone --nproc_per_node 4 tools/cache_latents.py ... --device cuda   # 4 ranks, one GPU each

Shards of --shard-size clips are written atomically; rerunning the same command resumes, keeping the shards that
already hold their clips from the same autoencoders and source. Under torchrun rank r encodes the shards k with
k % world_size == r into the same --out (the shards are those of one process, bit for bit); each rank logs the
shards it wrote or kept to OUT/ranks/rank<r>.log, and rank 0 reports once all are done.
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
from avgen.errors import InputError
from avgen.timeline import clip_lengths
from avgen.train.distributed import DistInfo, all_mean, setup, teardown
from avgen.train.logging import rank_line


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video-ae", required=True)
    ap.add_argument("--audio-ae", required=True)
    ap.add_argument("--fps", default=None,
                    help="the video AE's frame rate, as video_ae.fps of the training run: a diffusers video VAE "
                         "stores none (default: its class's); an avgen save records its own")  # fmt: skip
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0, help="first clip index")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--audio-patch", type=int, default=2,
                    help="tokens.audio_patch of the training run: the audio is cut to whole audio tokens")  # fmt: skip
    ap.add_argument("--folder", default=None, help="a folder of real media instead of the avworld")
    ap.add_argument(
        "--families",
        default=None,
        help="avworld families drawn from, comma-separated; repeat one to weight it up (talk,talk,bounce)",
    )
    ap.add_argument("--shard-size", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="where the autoencoders encode (cuda: cuda:LOCAL_RANK under torchrun)")  # fmt: skip
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        video_ae, audio_ae = load(args.video_ae, fps=args.fps), load(args.audio_ae)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    fps, sr, ch = float(video_ae.geometry.input_rate), int(audio_ae.geometry.input_rate), audio_ae.geometry.channels
    try:  # the frames and samples of a clip of --duration in the token layout (as avgen-train builds it)
        lengths = clip_lengths(video_ae.geometry, audio_ae.geometry, args.duration, (1, 1, 1), args.audio_patch)
    except ValueError as e:
        print(f"error: --duration: {e}", file=sys.stderr)
        return 2
    if args.folder:
        data = MediaFolder(args.folder, args.duration, fps, sr, size=args.size, channels=ch, train=False)
        indices = range(min(args.count, len(data)))
    else:
        families = args.families.split(",") if args.families else None
        try:
            data = AVWorld(seed=args.seed, duration=args.duration, fps=fps, size=args.size, sample_rate=sr,
                           families=families, channels=ch)  # fmt: skip
        except ValueError as e:
            print(f"error: --families: {e}", file=sys.stderr)
            return 2
        indices = range(args.start, args.start + args.count)
    try:
        info = setup(args.device)
    except InputError as e:
        print(f"error: --device: {e}", file=sys.stderr)
        return 2
    try:
        _cache(args, info, video_ae.to(info.device), audio_ae.to(info.device), data, indices, lengths)
    finally:
        teardown()
    return 0


def _cache(args, info: DistInfo, video_ae, audio_ae, data, indices: range, lengths: tuple[int, int]) -> None:
    """Encode this rank's shards (k % world_size == rank) that are not complete yet; rank 0 reports at the end."""
    hashes = {"video": weights_hash(video_ae), "audio": weights_hash(audio_ae)}
    source = {"source": "folder"} if args.folder else {"source": "avworld", "world_version": str(WORLD_VERSION)}
    source["fps"] = str(video_ae.geometry.input_rate)  # the weights hash does not say it (a diffusers VAE's is free)
    out = Path(args.out)
    chunks = [list(indices[i : i + args.shard_size]) for i in range(0, len(indices), args.shard_size)]
    mine = [k for k in range(len(chunks)) if k % info.world_size == info.rank]
    todo = [k for k in mine if not shard_done(shard_path(out, k), chunks[k], hashes, source)]
    done = _total(len(mine) - len(todo), info)  # every rank has looked before any writes
    if done and info.is_main:
        print(f"resuming: {done} of {len(chunks)} shard(s) in {out} are complete")
    for k in sorted(set(mine) - set(todo)):
        rank_line(out, info, f"shard {k}: complete, kept")
    bar = tqdm(total=sum(len(chunks[k]) for k in todo), desc="encoding", unit="clip", disable=not info.is_main)
    for k in todo:
        _encode_shard(shard_path(out, k), chunks[k], data, video_ae, audio_ae, args.batch, hashes, source, bar,
                      lengths)  # fmt: skip
        rank_line(out, info, f"shard {k}: encoded clips {chunks[k][0]}..{chunks[k][-1]}")
    bar.close()
    written = _total(len(todo), info)  # a collective: every rank's shards are written when it returns
    if not info.is_main:
        return
    for extra in sorted(out.glob("shard_*.safetensors"))[len(chunks) :]:  # from an earlier, longer run
        extra.unlink()
        print(f"removed {extra}: beyond the {len(chunks)} shard(s) of this cache")
    print(f"wrote {written} shard(s) of latents ({len(chunks)} in all) by {info.world_size} rank(s) for "
          f"{len(indices)} clips to {out}")  # fmt: skip


@torch.no_grad()
def _encode_shard(path: Path, ids: list[int], data, video_ae, audio_ae, batch: int, hashes: dict[str, str],
                  source: dict[str, str], bar, lengths: tuple[int, int]) -> None:  # fmt: skip
    """Encode clips `ids` of `data` in batches of `batch` (posterior means) and write them as one shard, atomically;
    each clip cut to `lengths` (frames, samples): whole audio tokens."""
    frames, samples = lengths
    device = next(video_ae.parameters()).device
    buf: dict[str, list] = {"video": [], "audio": [], "captions": [], "metas": []}
    for j in range(0, len(ids), batch):
        part = ids[j : j + batch]
        b = collate_clips([data[i] for i in part])
        buf["video"].append(video_ae.encode(b["video"][:, :, :frames].to(device)).cpu())
        buf["audio"].append(audio_ae.encode(b["audio"][..., :samples].to(device)).cpu())
        buf["captions"] += b["captions"]
        buf["metas"] += [m | {"index": i} for m, i in zip(b["meta"], part, strict=True)]
        bar.update(len(part))
    write_shard(path, torch.cat(buf["video"]), torch.cat(buf["audio"]), buf["captions"], buf["metas"], hashes,
                source)  # fmt: skip


def _total(n: int, info: DistInfo) -> int:
    """The sum of every rank's n (a collective: every rank calls it at the same point)."""
    return round(float(all_mean(torch.tensor(float(n), device=info.device))) * info.world_size)


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
    recorded = {k: v for k, v in source.items() if k != "fps" or k in meta}  # shards from before fps was recorded
    same_source = all(meta.get(key) == value for key, value in recorded.items())
    same_aes = meta.get("video_ae_hash") == hashes["video"] and meta.get("audio_ae_hash") == hashes["audio"]
    return same_source and same_aes and indices == ids


if __name__ == "__main__":
    raise SystemExit(main())
