"""Cached latents: sharded safetensors of raw AE latents with captions, meta, and the hash of the AE weights.

DiT training on CPU cannot afford to run the autoencoders every step; encode once with tools/cache_latents.py.
A shard remembers which weights made it, the frame rate its clips were encoded at (`fps`: the weights do not say it
for a diffusers video VAE) and, for avworld clips, which version of the world rendered them; the reader refuses
shards from other weights, another frame rate or another world version.

The reader is lazy: opening a cache reads each shard's header once (metadata, checks, byte offsets) and keeps the
captions; a clip's latents are read from its file when indexed, so memory does not grow with the cache. The per-clip
metas (about 1 KB of JSON each for avworld clips, some 4 KB each as Python objects) are parsed from a shard's header
when asked for, a few shards cached; training reads only latents and captions.
"""

from __future__ import annotations

import bisect
import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.data import Dataset

from avgen._atomic import atomic_path
from avgen.errors import InputError, MissingFileError

FORMAT = "avgen-latents-1"
DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


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
    source: where the clips came from, e.g. {"source": "avworld", "world_version": "2", "fps": "16"}."""
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


@dataclass(frozen=True)
class TensorSpan:
    """Where one tensor of a safetensors file lies: dtype, shape and its first byte in the file."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int

    @property
    def row_bytes(self) -> int:  # bytes of one entry along the first axis
        return math.prod(self.shape[1:]) * self.dtype.itemsize


def read_header(path: Path) -> tuple[dict[str, str], dict[str, TensorSpan]]:
    """A safetensors file's metadata and tensor spans, from its header alone. A file whose size is not what the
    header describes (a cut copy, an interrupted transfer) or that is no safetensors file is refused naming it."""
    size = path.stat().st_size
    cut = f"{path} is {size} bytes, not the whole latent shard its header describes: re-run tools/cache_latents.py"
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little")
        if len(head) < 8 or 8 + n > size:
            raise InputError(cut)
        try:
            header = json.loads(fh.read(n))
            metadata = header.pop("__metadata__", None) or {}
            tensors = {name: (t["dtype"], *t["data_offsets"]) for name, t in header.items()}
        except (UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError) as e:
            raise InputError(f"{path}: not a safetensors file (unreadable header: {e!r})") from e
    spans, end = {}, 8 + n
    for name, t in header.items():
        _, begin, stop = tensors[name]
        if t["dtype"] not in DTYPES:
            raise InputError(f"{path}: tensor {name!r} is {t['dtype']}, not one of {sorted(DTYPES)}")
        spans[name] = TensorSpan(DTYPES[t["dtype"]], tuple(t["shape"]), 8 + n + begin)
        if stop - begin != math.prod(t["shape"]) * spans[name].dtype.itemsize:
            raise InputError(f"{path}: tensor {name!r} has {stop - begin} bytes for shape {t['shape']}: corrupt file")
        end = max(end, 8 + n + stop)
    if end != size:
        raise InputError(cut)
    return metadata, spans


class _Files:
    """Read-only descriptors of the shard files, opened lazily by each process that reads (a DataLoader worker
    forked from the reader opens its own; pickling, for spawned workers, carries the paths only)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths, self._fds, self._pid = paths, {}, os.getpid()

    def read_into(self, k: int, out: torch.Tensor, offset: int) -> torch.Tensor:
        """Fill the contiguous tensor `out` with the bytes of file k from `offset`."""
        if self._pid != os.getpid():  # forked: the parent's descriptors are copies; close ours and open afresh
            self.close()
            self._pid = os.getpid()
        fd = self._fds.get(k)
        if fd is None:
            fd = self._fds[k] = os.open(self.paths[k], os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        buf = out.view(torch.uint8).reshape(-1).numpy()
        got = os.preadv(fd, [buf], offset)
        if got != len(buf):
            raise InputError(f"{self.paths[k]} was cut while being read ({got} of {len(buf)} bytes at {offset})")
        return out

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds = {}

    def __getstate__(self) -> dict:
        return {"paths": self.paths}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["paths"])

    def __del__(self) -> None:
        if getattr(self, "_pid", None) == os.getpid():
            self.close()


class _Rows:
    """Global clip index -> (shard, row within it)."""

    def __init__(self, counts: list[int]) -> None:
        self.starts = [0]
        for c in counts:
            self.starts.append(self.starts[-1] + c)

    def __len__(self) -> int:
        return self.starts[-1]

    def locate(self, i: int) -> tuple[int, int]:
        n = len(self)
        i = int(i) + (n if i < 0 else 0)
        if not 0 <= i < n:
            raise IndexError(f"clip {i} of {n}")
        k = bisect.bisect_right(self.starts, i) - 1
        return k, i - self.starts[k]


class LatentColumn(Sequence):
    """One latent tensor ("video" or "audio") of every shard as a column: .shape (n, ...) like the concatenation,
    and column[i] reads clip i's row from its file (a fresh tensor)."""

    def __init__(self, files: _Files, rows: _Rows, spans: list[TensorSpan]) -> None:
        self.files, self.rows, self.spans = files, rows, spans
        self.dtype, self.row_shape = spans[0].dtype, spans[0].shape[1:]

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.row_shape))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> torch.Tensor:
        k, r = self.rows.locate(i)
        span = self.spans[k]
        out = torch.empty(self.row_shape, dtype=self.dtype)
        return self.files.read_into(k, out, span.offset + r * span.row_bytes)


class _Metas(Sequence):
    """Per-clip metas, parsed from a shard's header when asked for (the last few shards' kept)."""

    def __init__(self, paths: list[Path], rows: _Rows) -> None:
        self.paths, self.rows = paths, rows
        self._shard = functools.lru_cache(maxsize=4)(self._parse)

    def _parse(self, k: int) -> list[dict]:
        return json.loads(read_header(self.paths[k])[0]["meta"])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        k, r = self.rows.locate(i)
        return self._shard(k)[r]

    def __getstate__(self) -> dict:
        return {"paths": self.paths, "rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["paths"], state["rows"])


class _MetaField(Sequence):
    """One key of every clip's meta (None where absent): each shard's header parsed once for it and only the values
    kept, so a small field read at every step (a clip's script) does not re-parse whole headers."""

    def __init__(self, metas: _Metas, key: str) -> None:
        self.metas, self.key, self._columns = metas, key, {}

    def __len__(self) -> int:
        return len(self.metas)

    def __getitem__(self, i: int):
        k, r = self.metas.rows.locate(i)
        if k not in self._columns:
            self._columns[k] = [m.get(self.key) for m in self.metas._shard(k)]
        return self._columns[k][r]


def _open_shard(f: Path, want: dict[str, str]) -> tuple[dict[str, str], dict[str, TensorSpan]]:
    """One shard's header, checked: the format, the AEs that made it, the world version, the two latents."""
    meta, spans = read_header(f)
    if meta.get("format") != FORMAT:
        raise InputError(f"{f}: not an avgen latent shard (format {meta.get('format')!r})")
    for key in ("video", "audio"):
        if key in want and meta.get(f"{key}_ae_hash") != want[key]:
            have = meta.get(f"{key}_ae_hash", "?")[:12]
            raise InputError(
                f"{f} was made by different {key} autoencoder weights ({have} != {want[key][:12]}): "
                f"the latents are stale; re-run tools/cache_latents.py with these AEs"
            )
    if "fps" in want and "fps" in meta and meta["fps"] != want["fps"]:  # shards written before rates were recorded pass
        raise InputError(f"{f} holds clips encoded at {meta['fps']} fps, but the video autoencoder runs at "
                         f"{want['fps']} fps (video_ae.fps): re-run tools/cache_latents.py with --fps "
                         f"{want['fps']}, or train at the cache's rate")  # fmt: skip
    check_world(f, meta)
    if "video" not in spans or "audio" not in spans:
        raise InputError(f"{f}: an avgen latent shard needs 'video' and 'audio' tensors, it has {sorted(spans)}")
    return meta, spans


class LatentShards(Dataset):
    """All shards in a directory as one dataset of {"video", "audio", "caption", "meta"} items (raw latents).

    Pass the autoencoders (or their hashes) that training will use: shards made by other weights are refused.
    .video and .audio are LatentColumns (.shape of the whole cache, [i] reads clip i from its file); .captions is a
    list; .metas parses a shard's metas when first asked for; .scripts is each clip's meta["script"] (or None), kept.
    Safe to use from forked or spawned DataLoader workers.
    """

    def __init__(self, directory: str | Path, video_ae=None, audio_ae=None, hashes: dict[str, str] | None = None):
        from avgen.autoencoders import weights_hash

        self.dir = Path(directory)
        files = sorted(self.dir.glob("shard_*.safetensors"))
        if not files:
            raise MissingFileError(f"no latent shards (shard_*.safetensors) in {self.dir}: run tools/cache_latents.py")
        want = dict(hashes or {})
        if video_ae is not None:
            want["video"], want["fps"] = weights_hash(video_ae), str(video_ae.geometry.input_rate)
        if audio_ae is not None:
            want["audio"] = weights_hash(audio_ae)
        spans: dict[str, list[TensorSpan]] = {"video": [], "audio": []}
        self.captions: list[str] = []
        for f in files:
            meta, found = _open_shard(f, want)
            captions = json.loads(meta["captions"])
            for key in spans:
                if found[key].shape[0] != len(captions):
                    raise InputError(f"{f}: {found[key].shape[0]} {key} latents but {len(captions)} captions")
                first = spans[key][0].shape[1:] if spans[key] else found[key].shape[1:]
                if found[key].shape[1:] != first:
                    raise InputError(f"{f}: {key} latents of shape {found[key].shape[1:]} but {files[0]} has "
                                     f"{first}: cache every shard with the same settings")  # fmt: skip
                spans[key].append(found[key])
            self.captions += captions
        rows, self._files = _Rows([s.shape[0] for s in spans["video"]]), _Files(files)
        self.video = LatentColumn(self._files, rows, spans["video"])
        self.audio = LatentColumn(self._files, rows, spans["audio"])
        self.metas = _Metas(files, rows)
        self.scripts = _MetaField(self.metas, "script")  # meta["script"] or None: what LatentBatcher reads each step

    def __len__(self) -> int:
        return len(self.video)

    def __getitem__(self, i: int) -> dict:
        return {"video": self.video[i], "audio": self.audio[i], "caption": self.captions[i], "meta": self.metas[i]}
