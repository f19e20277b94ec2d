"""Datasets: the procedural world, folders of real media, cached latents; and batch collation."""

from avgen.data.avworld import AVWorld
from avgen.data.batch import collate_clips, video_from_model, video_to_model
from avgen.data.folder import MediaFolder

__all__ = ["AVWorld", "MediaFolder", "collate_clips", "video_from_model", "video_to_model"]
