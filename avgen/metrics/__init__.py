"""Training-free metrics that read only frames and samples (never `clip.meta`): sync, onsets, attribute detectors,
and a Fréchet distance on our autoencoders' features."""

from avgen.metrics.attributes import read_attributes
from avgen.metrics.frechet import frechet_distance
from avgen.metrics.onsets import detect_onsets, onset_strength
from avgen.metrics.sync import av_align, estimate_offset, mouth_sync

__all__ = [
    "av_align",
    "detect_onsets",
    "estimate_offset",
    "frechet_distance",
    "mouth_sync",
    "onset_strength",
    "read_attributes",
]
