"""Cached latents: sharded safetensors of raw AE latents with captions, meta, and the hash of the AE weights.

DiT training on CPU cannot afford to run the autoencoders every step; encode once with tools/cache_latents.py.
A shard remembers which weights made it and, for avworld clips, which version of the world rendered them; the reader
refuses shards from other weights or another world version.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from avgen._atomic import atomic_path
from avgen.errors import InputError, MissingFileError

FORMAT = "avgen-latents-1"


def write_shard(
    path: str | Path,
    video: torch.Tensor,
    audio: torch.Tensor,
    captions: list[str],
    metas: list[dict],
    hashes: dict[str, str],
    source: dict[str, str] | None = None,
) -> Path:
    """video (n, c, t, h, w) and audio (n, c, m) raw latents of n clips -> one shard (written atomically).
    source: where the clips came from, e.g. {"source": "avworld", "world_version": "2"}."""
    if not (len(video) == len(audio) == len(captions) == len(metas)):
        raise InputError("a shard needs the same number of video latents, audio latents, captions and metas")
    metadata = {"format": FORMAT, "captions": json.dumps(captions), "meta": json.dumps(metas),
                "video_ae_hash": hashes["video"], "audio_ae_hash": hashes["audio"], **(source or {})}  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"video": video.contiguous().float(), "audio": audio.contiguous().float()}, str(tmp), metadata)
    return path


def check_world(path: Path, meta: dict) -> None:
    """Refuse avworld latents rendered by another version of the world (shards written before versions were
    recorded hold avworld clips of version 1: their per-clip meta names a family)."""
    from avgen.data.avworld.world import WORLD_VERSION

    avworld = meta.get("source") == "avworld" or ("source" not in meta and '"family"' in meta.get("meta", ""))
    version = int(meta.get("world_version", 1))
    if avworld and version != WORLD_VERSION:
        raise InputError(
            f"{path} holds avworld clips of world version {version}, but this avgen renders version {WORLD_VERSION}: "
            f"the latents are stale; re-run tools/cache_latents.py"
        )


class LatentShards(Dataset):
    """All shards in a directory as one dataset of {"video", "audio", "caption", "meta"} items (raw latents).

    Pass the autoencoders (or their hashes) that training will use: shards made by other weights are refused.
    """

    def __init__(self, directory: str | Path, video_ae=None, audio_ae=None, hashes: dict[str, str] | None = None):
        from avgen.autoencoders import weights_hash

        self.dir = Path(directory)
        files = sorted(self.dir.glob("shard_*.safetensors"))
        if not files:
            raise MissingFileError(f"no latent shards (shard_*.safetensors) in {self.dir}: run tools/cache_latents.py")
        want = dict(hashes or {})
        if video_ae is not None:
            want["video"] = weights_hash(video_ae)
        if audio_ae is not None:
            want["audio"] = weights_hash(audio_ae)
        videos, audios, self.captions, self.metas = [], [], [], []
        for f in files:
            with safe_open(str(f), framework="pt") as sf:
                meta = sf.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise InputError(f"{f}: not an avgen latent shard (format {meta.get('format')!r})")
                for key in ("video", "audio"):
                    if key in want and meta.get(f"{key}_ae_hash") != want[key]:
                        have = meta.get(f"{key}_ae_hash", "?")[:12]
                        raise InputError(
                            f"{f} was made by different {key} autoencoder weights ({have} != {want[key][:12]}): "
                            f"the latents are stale; re-run tools/cache_latents.py with these AEs"
                        )
                check_world(f, meta)
                videos.append(sf.get_tensor("video"))
                audios.append(sf.get_tensor("audio"))
            self.captions += json.loads(meta["captions"])
            self.metas += json.loads(meta["meta"])
        self.video = torch.cat(videos)
        self.audio = torch.cat(audios)

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "audio": self.audio[i], "caption": self.captions[i], "meta": self.metas[i]}
