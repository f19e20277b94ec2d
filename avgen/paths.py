"""Where the default model lives when none is named: one lookup for every entry point.

Order: an explicit directory (`model=`, `--model`, `video_ae.path=`, `audio_ae.path=`), then the environment variable
AVGEN_MODEL, then ./assets/default in the current directory (a checkout). The wheel carries no weights, so an installed
avgen finds a model only through the first two or from inside a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

from avgen.errors import MissingFileError

ENV_VAR = "AVGEN_MODEL"
CHECKOUT_DIR = Path("assets") / "default"


def default_model_dir(explicit: str | os.PathLike | None = None, part: str = "dit") -> Path:
    """The model directory to use; `part` ("dit", "video_ae", "audio_ae") is the subdirectory it must have."""
    if explicit:
        return Path(explicit)
    searched = []
    env = os.environ.get(ENV_VAR)
    candidates = ([(Path(env), f"{ENV_VAR}={env}")] if env else []) + [(CHECKOUT_DIR, f"./{CHECKOUT_DIR}")]
    for directory, label in candidates:
        if (directory / part).is_dir():
            return directory
        searched.append(label)
    if not env:
        searched.insert(0, f"{ENV_VAR} (not set)")
    raise MissingFileError(
        f"no avgen model with {part}/ found (searched {', '.join(searched)}): pass model=DIR or set {ENV_VAR}=DIR "
        f"(an avgen-train export directory, or assets/default of a checkout)"
    )


def default_ae_dir(part: str, explicit: str | os.PathLike | None = None) -> Path:
    """An autoencoder directory: `explicit`, else the default model's `part` ("video_ae" or "audio_ae")."""
    return Path(explicit) if explicit else default_model_dir(part=part) / part


def portable_path(path: str | os.PathLike | None) -> str | None:
    """`path` as it may be written into a file we ship: relative to the current directory when inside it, else only
    its last component (a training machine's absolute paths mean nothing elsewhere)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return p.name
