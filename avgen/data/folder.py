"""`MediaFolder`: fixed-length windows over a folder of real media, robust to files that can't be read.

Captions come from a sidecar `<stem>.txt` beside each file or from a JSONL manifest (`{"path": ..., "caption": ...}`
per line, paths relative to the manifest). Windows start at random in training (a pure function of seed, epoch and
index, so a resumed run sees the same data) and at the centre in evaluation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import av
import numpy as np
from torch.utils.data import Dataset, get_worker_info

from avgen.errors import DataError, InputError, MissingFileError
from avgen.media import AUDIO_SUFFIXES, VIDEO_SUFFIXES, AVClip, MediaError, read_clip

log = logging.getLogger(__name__)


class MediaFolder(Dataset):
    """Windows of `duration` seconds from every readable media file under `root`.

    Files that are unreadable, truncated, empty, shorter than `duration`, or without audio (unless
    missing_audio="silence") are skipped with one warning each and counted in `skipped`; an item that fails is
    replaced by the next readable one, (index + k) % len, so the order stays deterministic. Copies in data-loader
    workers report their skips back through `note_skipped` (avgen.train.stream), which warns and counts them here.
    """

    def __init__(
        self,
        root: str | Path,
        duration: float,
        fps: float,
        sample_rate: int,
        size: tuple[int, int] | int | None = None,
        channels: int = 1,
        train: bool = True,
        seed: int = 0,
        manifest: str | Path | None = None,
        missing_audio: str = "error",
        max_skip_ratio: float = 0.5,
        include_audio_only: bool = False,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingFileError(f"media folder {self.root} does not exist: set data.root to a folder of videos")
        self.duration, self.fps, self.sample_rate = float(duration), float(fps), int(sample_rate)
        self.size = (size, size) if isinstance(size, int) else (tuple(size) if size else None)
        self.channels, self.train, self.seed, self.epoch = channels, train, int(seed), 0
        self.missing_audio, self.max_skip_ratio = missing_audio, max_skip_ratio
        suffixes = VIDEO_SUFFIXES | (AUDIO_SUFFIXES if include_audio_only else set())
        if manifest is not None:
            self.files, self.captions = self._from_manifest(Path(manifest))
        else:
            self.files = sorted(p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            self.captions = {p: self._sidecar(p) for p in self.files}
        if not self.files:
            raise MissingFileError(f"no media files ({', '.join(sorted(suffixes))}) under {self.root}")
        self.skipped: dict[str, str] = {}
        self._lengths: dict[Path, float] = {}

    @staticmethod
    def _sidecar(path: Path) -> str:
        txt = path.with_suffix(".txt")
        return txt.read_text().strip() if txt.is_file() else ""

    def _from_manifest(self, manifest: Path) -> tuple[list[Path], dict[Path, str]]:
        files, captions = [], {}
        for n, line in enumerate(manifest.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                path = (manifest.parent / entry["path"]).resolve()
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise InputError(f'{manifest}:{n}: expected {{"path": ..., "caption": ...}} ({e})') from e
            files.append(path)
            captions[path] = str(entry.get("caption", ""))
        return files, captions

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def set_epoch(self, epoch: int) -> None:
        """Training windows are a pure function of (seed, epoch, index)."""
        self.epoch = int(epoch)

    def _length(self, path: Path) -> float:
        if path not in self._lengths:
            self._lengths[path] = _probe_duration(path, self.missing_audio)
        return self._lengths[path]

    def _start(self, index: int, length: float) -> float:
        slack = max(0.0, length - self.duration)
        if not self.train:
            return slack / 2
        rng = np.random.default_rng([self.seed, self.epoch, index])
        frames = int(slack * self.fps)  # start on a frame boundary
        return float(rng.integers(frames + 1)) / self.fps

    def _load(self, index: int) -> AVClip:
        path = self.files[index]
        length = self._length(path)
        if length + 1e-6 < self.duration:
            raise MediaError(f"{path}: {length:.2f} s is shorter than the {self.duration} s window")
        start = self._start(index, length)
        clip = read_clip(path, fps=self.fps, sample_rate=self.sample_rate, start=start, duration=self.duration,
                         size=self.size, channels=self.channels, missing_audio=self.missing_audio)  # fmt: skip
        clip.caption = self.captions.get(path, "")
        clip.meta = {"path": str(path), "start": start}
        return clip

    def __getitem__(self, index: int) -> AVClip:
        n = len(self.files)
        for k in range(n):
            i = (index + k) % n
            key = str(self.files[i])
            if key in self.skipped:
                continue
            try:
                return self._load(i)
            except (MediaError, OSError, ValueError) as e:
                if get_worker_info() is None:  # a data-loader worker's skips are warned about where they are merged
                    log.warning("skipping %s: %s", key, e)
                self._skip({key: str(e)})
        raise DataError(f"no readable media under {self.root}: {self.skipped}")

    def note_skipped(self, skipped: dict[str, str]) -> None:
        """Merge the files a copy of this dataset skipped in a data-loader worker (path -> reason): one warning each
        new file, the same count and the same max_skip_ratio stop as if they had been read here."""
        for key, reason in skipped.items():
            if key not in self.skipped:
                log.warning("skipping %s: %s", key, reason)
        self._skip(skipped)

    def _skip(self, skipped: dict[str, str]) -> None:
        self.skipped.update(skipped)
        n = len(self.files)
        if self.num_skipped > self.max_skip_ratio * n:
            raise DataError(
                f"{self.num_skipped} of {n} files under {self.root} could not be read "
                f"(more than max_skip_ratio={self.max_skip_ratio}); the first: {next(iter(self.skipped.values()))}"
            )


def _probe_duration(path: Path, missing_audio: str) -> float:
    """Duration from the container header, checking the file opens and has what we need."""
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: the file is empty (0 bytes)")
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise MediaError(f"{path}: no video stream")
            if not c.streams.audio and missing_audio == "error":
                raise MediaError(f"{path}: no audio stream")
            if c.duration is None:
                raise MediaError(f"{path}: unknown duration")
            return c.duration / 1_000_000
    except av.error.FFmpegError as e:
        raise MediaError(f"{path}: cannot open ({e})") from e
