"""Loading autoencoders from directories: ours (config.json + model.safetensors), references to them
(reference.json, see reference.py), and published ones saved by transformers or diffusers. Never pickle.

What `load` may build is decided by the tables below, fixed in this file, plus the classes that installed packages
register under the entry-point group `avgen.autoencoders` (name = the class's `kind`):

    # a plugin's pyproject.toml
    [project.entry-points."avgen.autoencoders"]
    my_vae = "my_package.vae:MyVAE"      # MyVAE subclasses avgen.autoencoders.Autoencoder, with kind = "my_vae"

A directory's own files only pick a row (config.json "class", "model_type" or "_class_name"); a class path is never
read from them. Adding a format is one row: its kind in KINDS, and its config.json key in TRANSFORMERS_MODEL_TYPES or
DIFFUSERS_CLASS_NAMES (the class then has a `from_pretrained(directory)` classmethod).
"""

from __future__ import annotations

import importlib
import json
import warnings
from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from pathlib import Path

import torch

from avgen.autoencoders.base import CONFIG_NAME, Autoencoder, load_saved, weights_hash
from avgen.autoencoders.reference import REFERENCE_NAME, load_reference
from avgen.errors import InputError

__all__ = ["ENTRY_POINT_GROUP", "known_kinds", "load", "weights_hash"]

# kind (config.json "class" of a directory Autoencoder.save wrote) -> (module, class), imported when first needed
KINDS: dict[str, tuple[str, str]] = {
    "video_vae": ("avgen.autoencoders.video", "VideoVAE"),
    "seanet_audio": ("avgen.autoencoders.audio", "SeanetAudioAE"),
    "encodec24k": ("avgen.autoencoders.encodec", "EncodecAdapter"),
    "hf_encodec": ("avgen.autoencoders.hf_audio", "HFEncodec"),
    "hf_dac": ("avgen.autoencoders.hf_audio", "HFDac"),
    "diffusers_oobleck": ("avgen.autoencoders.hf_audio", "DiffusersOobleck"),
    "diffusers_wan": ("avgen.autoencoders.diffusers_video", "WanVAE"),
    "diffusers_ltx_video": ("avgen.autoencoders.diffusers_video", "LTXVideoVAE"),
    "diffusers_cogvideox": ("avgen.autoencoders.diffusers_video", "CogVideoXVAE"),
}
# a transformers save_pretrained directory: config.json "model_type" -> kind
TRANSFORMERS_MODEL_TYPES: dict[str, str] = {"encodec": "hf_encodec", "dac": "hf_dac"}
# a diffusers save_pretrained directory: config.json "_class_name" -> kind
DIFFUSERS_CLASS_NAMES: dict[str, str] = {
    "AutoencoderOobleck": "diffusers_oobleck",
    "AutoencoderKLWan": "diffusers_wan",
    "AutoencoderKLLTXVideo": "diffusers_ltx_video",
    "AutoencoderKLCogVideoX": "diffusers_cogvideox",
}
ENTRY_POINT_GROUP = "avgen.autoencoders"


def _plugins() -> dict:
    """Entry points of the group, by name; one named like a built-in kind is ignored (with a warning)."""
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in KINDS:
            warnings.warn(f"entry point {ep.name!r} ({ep.value}) in {ENTRY_POINT_GROUP} is a built-in kind; ignored",
                          stacklevel=3)  # fmt: skip
        else:
            found[ep.name] = ep
    return found


class _Classes(Mapping):
    """kind -> Autoencoder subclass: the built-in table, then entry points; each imported only when looked up."""

    def __init__(self) -> None:
        self._plugins: dict | None = None

    def plugins(self) -> dict:
        if self._plugins is None:
            self._plugins = _plugins()
        return self._plugins

    def __getitem__(self, kind: str) -> type[Autoencoder]:
        if kind in KINDS:
            module, name = KINDS[kind]
            return getattr(importlib.import_module(module), name)
        ep = self.plugins()[kind]
        try:
            cls = ep.load()
        except Exception as e:
            raise InputError(f"entry point {kind!r} = {ep.value!r} ({ENTRY_POINT_GROUP}) failed to import: {e}") from e
        if not (isinstance(cls, type) and issubclass(cls, Autoencoder)) or cls.kind != kind:
            raise InputError(f"entry point {kind!r} = {ep.value!r} ({ENTRY_POINT_GROUP}) must name an "
                             f"avgen.autoencoders.Autoencoder subclass whose kind is {kind!r}")  # fmt: skip
        return cls

    def __contains__(self, kind: object) -> bool:
        return kind in KINDS or kind in self.plugins()

    def __iter__(self) -> Iterator[str]:
        return iter([*KINDS, *self.plugins()])

    def __len__(self) -> int:
        return len(KINDS) + len(self.plugins())


def known_kinds() -> list[str]:
    """Every kind `load` can build now: built-in ones and those registered by installed packages."""
    return sorted(_Classes())


def _foreign_kind(directory: Path, meta: dict) -> str | None:
    """The kind of a transformers / diffusers directory, None for one of ours; a foreign one we can't read raises."""
    if "class" in meta and "format_version" in meta:
        return None
    if "model_type" in meta:
        kind, table, what = TRANSFORMERS_MODEL_TYPES.get(meta["model_type"]), TRANSFORMERS_MODEL_TYPES, "model_type"
    elif "_class_name" in meta:
        kind, table, what = DIFFUSERS_CLASS_NAMES.get(meta["_class_name"]), DIFFUSERS_CLASS_NAMES, "_class_name"
    else:
        return None  # neither: load_saved names the missing fields
    if kind is None:
        raise InputError(f"{directory / CONFIG_NAME}: {what} {meta[what]!r} is not an autoencoder avgen can load; "
                         f"known: {sorted(table)}")  # fmt: skip
    return kind


def _rate(fps, fixed, where: str):
    """The frame rate to load at: `fixed` (what `where` records) unless none is recorded, then `fps`; an `fps` that
    differs from the recorded one is refused naming the setting (video_ae.fps in a Hydra config)."""
    from avgen.autoencoders.diffusers_video import frame_rate  # imports no diffusers

    if fixed is None:
        return fps
    if fps is not None and frame_rate(fps) != frame_rate(fixed):
        raise InputError(f"fps={fps} (video_ae.fps) conflicts with {where}, which fixes {frame_rate(fixed)} fps: give "
                         f"that rate or leave fps unset (null)")  # fmt: skip
    return fixed


def _no_fps(modality: str, fps, directory: Path) -> None:
    if fps is not None and modality != "video":
        raise InputError(f"fps={fps}: {directory} holds an {modality} autoencoder, which takes no frame rate")


def _load_dir(directory: Path, device: str | torch.device = "cpu", fps=None) -> Autoencoder:
    if not (directory / CONFIG_NAME).is_file() and (directory / "vae" / CONFIG_NAME).is_file():
        directory = directory / "vae"  # a diffusers pipeline directory: its VAE sits in vae/
    cfg = directory / CONFIG_NAME
    meta = json.loads(cfg.read_text()) if cfg.is_file() else {}
    classes = _Classes()
    kind = _foreign_kind(directory, meta) if isinstance(meta, dict) else None
    if kind is not None:
        _no_fps(classes[kind].modality, fps, directory)
        rate = {} if fps is None else {"fps": fps}  # video VAEs store no frame rate: given, or the class's default
        return classes[kind].from_pretrained(directory, **rate).to(device).eval()
    if isinstance(meta, dict) and "class" in meta and meta["class"] not in classes:
        raise InputError(f"{cfg}: unknown autoencoder class {meta['class']!r}; known: {sorted(classes)}. A class of "
                         f"your own loads once its package registers it under the entry-point group "
                         f"{ENTRY_POINT_GROUP!r}")  # fmt: skip
    ae = load_saved(directory, classes, device)
    ae.source_dir = directory.resolve()
    _no_fps(ae.modality, fps, directory)
    _rate(fps, ae.geometry.input_rate, f"{cfg} (an avgen save)")
    return ae


def load(directory: str | Path, device: str | torch.device = "cpu", *, fps: float | str | None = None) -> Autoencoder:
    """The autoencoder in `directory`, in eval mode: one saved by Autoencoder.save, a reference.json to one (its
    weights hash checked), or a transformers (EnCodec, DAC) / diffusers (Oobleck; Wan, LTX-Video, CogVideoX video
    VAEs) save_pretrained directory. A diffusers video VAE stores no frame rate: it loads at `fps`, by default its
    class's `default_fps` (Wan 16, LTX-Video 25, CogVideoX 8). An avgen save and a reference to a video AE record
    their rate: there `fps` may be left unset, and a different one is refused."""
    directory = Path(directory)
    if (directory / REFERENCE_NAME).is_file():
        where = directory / REFERENCE_NAME
        return load_reference(directory, lambda target, fixed: _load_dir(target, device, _rate(fps, fixed, where)))
    try:
        return _load_dir(directory, device, fps)
    except json.JSONDecodeError as e:
        raise InputError(f"{directory / CONFIG_NAME} is not valid JSON: {e}") from e
