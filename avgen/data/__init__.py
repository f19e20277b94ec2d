"""Datasets: the procedural world, folders of real media, cached latents; and batch collation.

The names below load on first use: the avworld needs scipy (a second of start-up), which generating a clip never
uses, and `avgen.data.batch` is imported by the pipeline.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from avgen.data.avworld import AVWorld
    from avgen.data.batch import collate_clips, video_from_model, video_to_model
    from avgen.data.folder import MediaFolder

_WHERE = {
    "AVWorld": "avgen.data.avworld",
    "MediaFolder": "avgen.data.folder",
    "collate_clips": "avgen.data.batch",
    "video_from_model": "avgen.data.batch",
    "video_to_model": "avgen.data.batch",
}
__all__ = ["AVWorld", "MediaFolder", "collate_clips", "video_from_model", "video_to_model"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'avgen.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
