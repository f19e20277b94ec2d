"""avgen: joint audio-video generation.

from avgen import AVGenPipeline
clip = AVGenPipeline.from_pretrained("assets/default")("a small red ball bounces around with soft thuds")
clip.save("ball.mp4")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["AVClip", "AVGenPipeline", "read_clip", "write_clip"]

if TYPE_CHECKING:
    from avgen.media import AVClip, read_clip, write_clip
    from avgen.pipeline import AVGenPipeline


def __getattr__(name: str):
    """Import lazily, so `import avgen.tokens` stays light."""
    if name == "AVGenPipeline":
        from avgen.pipeline import AVGenPipeline

        return AVGenPipeline
    if name in ("AVClip", "read_clip", "write_clip"):
        import avgen.media as media

        return getattr(media, name)
    raise AttributeError(f"module 'avgen' has no attribute {name!r}")
