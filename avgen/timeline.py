"""Time on a clip's clock: the spans of the video windows, which window each audio token belongs to, and how many
frames and samples a clip of a given duration has. avgen/tokens.py builds the token layout on these.

Video windows. A video token group spans `pt` latent frames (video_patch[0]). A uniform video AE gives every latent
frame `time_stride` input frames. A causal one (Wan, CogVideoX, LTX-Video: 1 + m * time_stride frames) gives its first
latent frame ONE input frame and each later one `time_stride`, so the first window spans 1 + (pt - 1) * time_stride
frames and the later ones pt * time_stride; its clips have 1 + (pt * g - 1) * time_stride frames (g windows).

Clip lengths (`clip_lengths`, the one rule every builder of clips follows):
    video  duration * fps frames, which must be a count the video AE and the patch take; any other duration is
           refused with the nearest valid counts and their durations (nothing is rounded silently).
    audio  the whole audio tokens (audio_patch latents of time_stride samples) that fit in the video's span:
           floor(video seconds * token rate). For rates with a whole ratio this is exactly the video's duration;
           otherwise the audio ends less than one token before the video (every audio token lies inside a window).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from fractions import Fraction

from avgen.autoencoders.base import AEGeometry
from avgen.errors import InputError


def latent_edges(t: int, video_rate: Fraction, causal: bool = False, time_stride: int = 1) -> list[Fraction]:
    """The t + 1 edges in seconds of t video latent frames (latent frame j spans [edges[j], edges[j + 1]))."""
    rate = Fraction(video_rate)
    if not causal:
        return [j / rate for j in range(t + 1)]
    fps = rate * time_stride
    return [Fraction(0)] + [(1 + (j - 1) * time_stride) / fps for j in range(1, t + 1)]


def window_of(centres: list[Fraction], edges: list[Fraction]) -> list[int]:
    """The index of the window [edges[w], edges[w + 1]) each time falls in (times past the last edge: the last)."""
    last = len(edges) - 2
    return [min(max(bisect_right(edges, c) - 1, 0), last) for c in centres]


def audio_tokens_in(seconds: Fraction, audio_rate: Fraction, k: int) -> int:
    """Whole audio tokens (k latents each, at `audio_rate` latents per second) that fit in `seconds`."""
    return math.floor(Fraction(seconds) * Fraction(audio_rate) / k)


def video_frames(video: AEGeometry, windows: int, pt: int) -> int:
    """Input frames of `windows` video windows of pt latent frames."""
    return video.input_length(windows * pt)


def _valid_frames_near(video: AEGeometry, around: Fraction, pt: int, count: int = 3) -> str:
    s = video.time_stride
    g = round(((around - 1) / s + 1) / pt) if video.causal else round(around / (pt * s))  # windows, to the nearest
    first = max(1, g - count // 2)
    counts = [video_frames(video, w, pt) for w in range(first, first + count)]
    return ", ".join(f"{n} ({float(n / video.input_rate):g} s)" for n in counts)


def _takes(video: AEGeometry, n: int, pt: int) -> bool:
    try:
        return video.latent_length(n) % pt == 0
    except InputError:
        return False


def check_frames(video: AEGeometry, frames: int | Fraction, pt: int, what: str = "") -> int:
    """`frames` as an int if the video AE and a time patch of pt latent frames take it; else a clear InputError."""
    frames = Fraction(frames)
    if frames.denominator == 1 and frames >= 1 and _takes(video, int(frames), pt):
        return int(frames)
    s = video.time_stride
    form = f"m*{pt * s} (m >= 1)"
    if video.causal:
        form = f"1 + m*{s} (m >= 0)" if pt == 1 else f"1 + (m*{pt} - 1)*{s} (m >= 1)"
    whole = "" if frames.denominator == 1 else ", not a whole number of input steps"
    raise InputError(
        f"{what}{float(frames):g} frames at {video.input_rate} fps{whole}: with this video AE (time stride "
        f"{s}, causal={video.causal}) and video_patch[0]={pt} lengths must be {form} frames; nearest: "
        f"{_valid_frames_near(video, frames, pt)}"
    )


def clip_lengths(
    video: AEGeometry, audio: AEGeometry, seconds: float | Fraction, video_patch: tuple[int, ...] = (1, 2, 2),
    audio_patch: int = 2,
) -> tuple[int, int]:  # fmt: skip
    """(frames, samples) of a clip of `seconds` in the token layout of these AEs and patches (module docstring)."""
    if audio.causal:
        raise InputError(f"the token layout takes audio AEs with uniform time steps; this one is causal: {audio}")
    d = Fraction(seconds).limit_denominator(1_000_000)
    pt = int(video_patch[0])
    frames = check_frames(video, d * video.input_rate, pt, f"duration {float(d):g} s = ")
    tokens = audio_tokens_in(frames / video.input_rate, audio.latent_rate, audio_patch)
    if tokens < 1:
        raise InputError(f"duration {float(d):g} s is shorter than one audio token ({audio_patch} latents of "
                         f"{audio.time_stride} samples at {audio.input_rate} Hz)")  # fmt: skip
    return frames, tokens * audio_patch * audio.time_stride


def shortest_duration(
    video: AEGeometry, audio: AEGeometry, seconds: float | Fraction, video_patch: tuple[int, ...] = (1, 2, 2),
    audio_patch: int = 2,
) -> Fraction:  # fmt: skip
    """The shortest clip duration (video frames / fps) >= seconds whose frames and samples both cover `seconds`."""
    want = Fraction(seconds).limit_denominator(10_000)
    pt = int(video_patch[0])
    step = Fraction(pt) / video.latent_rate  # one window (the later ones, for a causal AE)
    g = max(1, -(-want // step))  # fewer windows are shorter than `seconds`, causal or not
    while True:
        d = video_frames(video, g, pt) / video.input_rate
        tokens = audio_tokens_in(d, audio.latent_rate, audio_patch)
        if d >= want and tokens * audio_patch / audio.latent_rate >= want and tokens >= 1:
            return d
        g += 1
