"""Training-free metrics that read only frames and samples (never `clip.meta`)."""

from avgen.metrics.onsets import detect_onsets, onset_strength
from avgen.metrics.sync import av_align, estimate_offset, mouth_sync

__all__ = ["av_align", "detect_onsets", "estimate_offset", "mouth_sync", "onset_strength"]
