"""Checkpoints that survive crashes: atomic writes, keep the last K, safe loading, RNG state capture.

A checkpoint is a dict of tensors and plain containers saved with torch.save to `step_XXXXXXXX.pt` through a
temporary name + fsync + rename, so a crash mid-save leaves the previous checkpoint loadable. Loading uses
`weights_only=True`, so no code is ever unpickled: RNG states are stored as tensors and lists, not numpy objects.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path

import numpy as np
import torch

from avgen._atomic import atomic_path, remove_leftovers

log = logging.getLogger(__name__)

PATTERN = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Complete checkpoints in `directory`, oldest first (temporary files never match the pattern)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if PATTERN.match(p.name))


def latest_checkpoint(directory: str | Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def save_checkpoint(directory: str | Path, step: int, state: dict, keep: int = 3) -> Path:
    """Write `state` as step_{step}.pt atomically, then delete all but the newest `keep` checkpoints."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(d, step)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    for old in list_checkpoints(d)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def clean_run_dir(out: str | Path) -> list[Path]:
    """Remove the temporary files that a killed run left in its checkpoints/ and export/ folders, and say so."""
    out = Path(out)
    folders = [
        out / "checkpoints",
        out / "export",
        *(out / "export" / part for part in ("dit", "video_ae", "audio_ae")),
    ]
    removed = [p for folder in folders for p in remove_leftovers(folder)]
    if removed:
        names = ", ".join(str(p.relative_to(out)) for p in removed)
        log.warning("removed %d temporary file(s) an interrupted write left in %s: %s", len(removed), out, names)
    return removed


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint without unpickling code (weights_only=True)."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def seed_all(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and `random` at once: before a trainer builds its model, so two runs of the
    same command start from the same weights."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def capture_rng_state(generators: dict[str, torch.Generator] | None = None) -> dict:
    """torch CPU (+ CUDA), numpy, python `random` and named generators, as tensors / lists (weights_only-safe)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },  # fmt: skip
        "random": _py_random_to_plain(random.getstate()),
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict, generators: dict[str, torch.Generator] | None = None) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    random.setstate(_py_random_from_plain(state["random"]))
    for k, g in (generators or {}).items():
        if k in state["generators"]:
            g.set_state(state["generators"][k])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py_random_to_plain(s: tuple) -> list:
    version, internal, gauss = s
    return [version, list(internal), gauss]


def _py_random_from_plain(s: list) -> tuple:
    version, internal, gauss = s
    return (version, tuple(internal), gauss)
