"""Atomic file writes: write to a temporary name in the same directory, fsync, then rename over the target."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on error it is removed.

    The temporary name keeps the suffix so writers that pick a format from it still work. A crash leaves at most a
    hidden `.name.<id>.tmp<suffix>` file, never a half-written file under the requested name.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")  # TEMPORARY matches it
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


# what atomic_path names its temporary files, and the folders sharding.save_shards writes before its rename
TEMPORARY = re.compile(r"^\.(?P<stem>.+)\.[0-9a-f]{8}\.tmp(?P<suffix>\.[^.]+)?$")
TEMPORARY_DIR = re.compile(r"^\.step_\d{8}\.dcp\.tmp$")


def remove_leftovers(directory: str | Path, target: str | None = None) -> list[Path]:
    """Delete what a killed writer left in `directory`: only files named as atomic_path names its temporaries (and
    unfinished DCP shard folders), and with `target` only those of that file name. Returns what was removed."""
    d = Path(directory)
    if not d.is_dir():
        return []
    removed = []
    for p in sorted(d.iterdir()):
        m = TEMPORARY.match(p.name)
        if m and p.is_file() and (target is None or f"{m['stem']}{m['suffix'] or ''}" == target):
            p.unlink(missing_ok=True)
            removed.append(p)
        elif target is None and TEMPORARY_DIR.match(p.name) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
