"""References instead of copies: a model directory's video_ae/ or audio_ae/ may hold only `reference.json`, naming
where a large autoencoder lives and which weights it must be.

    video_ae/reference.json
    {"format_version": 1, "class": "diffusers_wan", "root": null, "path": "../../weights/wan_vae",
     "weights_sha256": "…", "latent_mean": [...], "latent_std": [...], "fps": "16"}

`path` is relative: to the folder holding reference.json (root null), or to a named root, an environment variable
whose name starts with AVGEN_ (root "AVGEN_WEIGHTS": path inside $AVGEN_WEIGHTS), so a model directory moves between
machines that keep their weights in different places. Absolute paths are refused. The target is any directory
`avgen.autoencoders.load` reads (an avgen save, or a transformers / diffusers one); the latent statistics travel in
reference.json (a published VAE's directory has none of ours), and so does a video AE's frame rate (a published
VAE stores none); the weights hash, taken after the stats are applied, is checked at every load. Copying
(Autoencoder.save) stays the default; `export_autoencoder` does either.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable, Collection
from pathlib import Path, PurePosixPath, PureWindowsPath

import torch

from avgen.autoencoders.base import CONFIG_NAME, WEIGHTS_NAME, Autoencoder, read_versioned_json, weights_hash
from avgen.errors import InputError, MissingFileError

REFERENCE_NAME = "reference.json"
REFERENCE_VERSION = 1
ROOT_NAME = re.compile(r"^AVGEN_[A-Z0-9_]+$")


def _root_dir(root: str, where: str) -> Path:
    if not ROOT_NAME.match(root):
        raise InputError(
            f"{where}: root {root!r} must be an environment variable named AVGEN_<NAME>, e.g. AVGEN_WEIGHTS"
        )
    value = os.environ.get(root)
    if not value:
        raise MissingFileError(f"{where} is relative to the root {root}, which is not set: set {root}=DIR")
    return Path(value)


def _is_absolute(path: str) -> bool:
    return PurePosixPath(path).is_absolute() or bool(PureWindowsPath(path).drive) or path.startswith(("~", "\\"))


def reference_path(ae: Autoencoder, directory: str | Path, root: str | None = None) -> str:
    """The relative path that a reference to `ae` written in `directory` stores: from `directory` (root None) or from
    the root's directory to the directory `ae` was loaded from. Raises a user error when there is none."""
    source = ae.source_dir
    if source is None:
        raise InputError(f"{ae.kind or type(ae).__name__} was not loaded from a directory, so {directory} cannot "
                         f"reference it: save it (Autoencoder.save) and load it from there, or copy it")  # fmt: skip
    source = Path(source).resolve()
    if root is None:
        return os.path.relpath(source, Path(directory).resolve())
    base = _root_dir(root, f"a reference in {directory}").resolve()
    if not source.is_relative_to(base):
        raise InputError(f"{source} is not inside {root}={base}: a reference relative to {root} needs it there")
    return source.relative_to(base).as_posix()


def write_reference(ae: Autoencoder, directory: str | Path, root: str | None = None) -> Path:
    """Make `directory` a reference to the directory `ae` was loaded from (removing a copy saved there before)."""
    from avgen._atomic import atomic_path

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": REFERENCE_VERSION, "class": ae.kind, "root": root,
            "path": reference_path(ae, directory, root), "weights_sha256": weights_hash(ae),
            "latent_mean": ae.latent_mean.tolist(), "latent_std": ae.latent_std.tolist()}  # fmt: skip
    if ae.modality == "video":  # a published video VAE's directory stores no frame rate: the reference keeps it
        meta["fps"] = str(ae.geometry.input_rate)
    with atomic_path(directory / REFERENCE_NAME) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    for stale in (CONFIG_NAME, WEIGHTS_NAME):  # a copy left by an earlier export would otherwise look complete
        (directory / stale).unlink(missing_ok=True)
    return directory / REFERENCE_NAME


def resolve_reference(directory: str | Path) -> tuple[Path, dict]:
    """(the directory that `directory`/reference.json names, its parsed content); checks the fields and the path."""
    path = Path(directory) / REFERENCE_NAME
    meta = read_versioned_json(path, ("path", "weights_sha256"), REFERENCE_VERSION)
    target = str(meta["path"])
    if _is_absolute(target):
        raise InputError(f"{path}: path {target!r} is absolute; a reference must be relative to its folder or to a "
                         f"root (\"root\": \"AVGEN_WEIGHTS\")")  # fmt: skip
    root = meta.get("root")
    full = (_root_dir(root, str(path)) if root else Path(directory)) / target
    if not full.is_dir():
        raise MissingFileError(f"{path} references {full}, which is not a directory"
                               + (f" (check {root}={os.environ.get(root)})" if root else ""))  # fmt: skip
    return full, meta


def load_reference(directory: str | Path, load_dir: Callable[[Path, str | None], Autoencoder]) -> Autoencoder:
    """The autoencoder `directory`/reference.json names, loaded with `load_dir(target, fps)` (fps: the frame rate the
    reference records for a video AE, None for an audio one or a reference written before rates were recorded), its
    stats applied and hash checked."""
    target, meta = resolve_reference(directory)
    if (target / REFERENCE_NAME).is_file():
        raise InputError(f"{Path(directory) / REFERENCE_NAME} references {target}, itself a reference: name its target")
    ae = load_dir(target, meta.get("fps"))
    if "latent_mean" in meta and "latent_std" in meta:
        ae.set_latent_stats(torch.tensor(meta["latent_mean"]), torch.tensor(meta["latent_std"]))
    found = weights_hash(ae)
    if found != meta["weights_sha256"]:
        raise InputError(f"{Path(directory) / REFERENCE_NAME} expects weights {meta['weights_sha256'][:16]}… but "
                         f"{target} holds {found[:16]}…: the referenced autoencoder changed; point it at the "
                         f"original weights or re-export the model")  # fmt: skip
    ae.source_dir = target.resolve()
    return ae


def export_autoencoder(
    ae: Autoencoder, directory: str | Path, reference: bool = False, root: str | None = None
) -> None:
    """Write `ae` into a model directory's part folder: a copy (Autoencoder.save, the default) or, with reference,
    reference.json to the directory it was loaded from. Either removes what the other form left there."""
    from avgen.autoencoders.io import known_kinds

    directory = Path(directory)
    if reference:
        write_reference(ae, directory, root)
    else:
        ae.save(directory)
        (directory / REFERENCE_NAME).unlink(missing_ok=True)
    if ae.kind not in known_kinds():
        warnings.warn(f"{directory}: autoencoder class {ae.kind!r} is not one avgen.autoencoders.load knows; "
                      f"register it under the entry-point group 'avgen.autoencoders' so this model directory loads",
                      stacklevel=2)  # fmt: skip


def check_parts(reference: Collection[str]) -> set[str]:
    """The parts an export references, checked: a subset of {"video", "audio"} (export.reference=[video,audio])."""
    parts = {reference} if isinstance(reference, str) else set(reference)
    if not parts <= {"video", "audio"}:
        raise InputError(f"export.reference={sorted(parts)}: name the parts to reference, video and/or audio")
    return parts
