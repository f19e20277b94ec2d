"""The three scene families. Each takes a numpy Generator and a `Frame` and returns a `Scene`.

Times are seconds from the clip start. Frame k shows the world at time k / fps. A sound caused by an event at time t
starts at sample round(t * sr).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from avgen.data.avworld import render, sounds, visemes
from avgen.data.avworld.speech import speak
from avgen.data.avworld.vocab import (
    BACKGROUNDS,
    COLOURS,
    LAMP_SHAPES,
    PITCHES,
    SHAPE_SOUNDS,
    SHAPES,
    SIZES,
    VOICES,
)


@dataclass(frozen=True)
class Frame:
    """Clip format: frames (t, h, w), audio (channels, n)."""

    t: int
    h: int
    w: int
    fps: float
    sr: int
    n: int
    channels: int

    @property
    def duration(self) -> float:
        return self.n / self.sr

    @property
    def scale(self) -> float:
        return float(min(self.h, self.w))


@dataclass
class Scene:
    video: np.ndarray  # (T, H, W, 3) float32 in [0, 1]
    audio: np.ndarray  # (C, N) float32, not yet normalised
    attributes: dict
    events: list[float]
    mouth: list[float] | None = None
    extra: dict = field(default_factory=dict)
    masks: list[np.ndarray] = field(default_factory=list)  # visible coverage (T, H, W) of each object / the lamp


def mix_in(track: np.ndarray, sound: np.ndarray, start: int, pan: float) -> None:
    """Add a mono sound to a (C, N) track from sample `start`; stereo uses an equal-power pan in [-1, 1]."""
    if track.shape[0] == 1:
        sounds.place(track[0], sound, start)
        return
    angle = (pan + 1.0) * np.pi / 4
    sounds.place(track[0], np.cos(angle) * sound, start)
    sounds.place(track[1], np.sin(angle) * sound, start)


def pick_background(rng: np.random.Generator, avoid: tuple[float, float, float] | None = None):
    names = list(BACKGROUNDS)
    name = names[rng.integers(len(names))]
    return name, BACKGROUNDS[name], float(rng.uniform(0.0, 0.5))


# ------------------------------------------------------------------------------------------
# bounce
# ------------------------------------------------------------------------------------------
DRAG = 1.2  # 1/s: objects slow down in flight, and every wall kicks them back to speed (like pinball bumpers)


def simulate_bounces(rng: np.random.Generator, f: Frame, radius: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Flight with drag between wall contacts; each contact kicks the object to a new speed and turns it a little.

    Speed decays as v0 * exp(-DRAG * tau) within a flight, so motion peaks right after each contact (visible in
    optical flow) and the timing is aperiodic. Contact times are exact (solved in closed form).
    Returns centres at frame times (T, 2) and contacts [(time, speed at contact in frame sizes per second)].
    """
    lo = np.array([radius, radius])
    hi = np.array([f.w - radius, f.h - radius])
    pos = lo + rng.uniform(0.1, 0.9, 2) * (hi - lo)
    angle = rng.uniform(0, 2 * np.pi)
    u = np.array([np.cos(angle), np.sin(angle)])
    t, segments, contacts = 0.0, [], []
    while True:
        with np.errstate(divide="ignore", invalid="ignore"):
            dist_axes = np.where(np.abs(u) > 1e-9, (np.where(u > 0, hi, lo) - pos) / u, np.inf)
        dist = float(max(dist_axes.min(), 0.0))
        v0 = max(rng.uniform(0.8, 1.6) * f.scale, 1.3 * DRAG * dist)  # always reaches the next wall
        tau = -np.log1p(-DRAG * dist / v0) / DRAG
        segments.append((t, pos.copy(), u.copy(), v0))
        if t + tau >= f.duration:
            break
        t += tau
        pos = np.clip(pos + u * dist, lo, hi)
        hit = dist_axes <= dist + 1e-9
        contacts.append((t, float((v0 - DRAG * dist) / f.scale)))
        u[hit] = -u[hit]
        rot = rng.uniform(-0.35, 0.35)
        c, s = np.cos(rot), np.sin(rot)
        u = np.array([c * u[0] - s * u[1], s * u[0] + c * u[1]])
        for ax in np.flatnonzero(hit):  # keep heading away from the wall just hit, at a usable angle
            away = 1.0 if pos[ax] <= lo[ax] + 1e-6 else -1.0
            u[ax] = away * max(abs(u[ax]), 0.25)
        u /= np.linalg.norm(u)
    times = np.arange(f.t) / f.fps
    starts = np.array([seg[0] for seg in segments])
    idx = np.searchsorted(starts, times, side="right") - 1
    tau = times - starts[idx]
    p0 = np.stack([segments[i][1] for i in idx])
    u0 = np.stack([segments[i][2] for i in idx])
    v0 = np.array([segments[i][3] for i in idx])
    centres = p0 + u0 * (v0 * (1 - np.exp(-DRAG * tau)) / DRAG)[:, None]
    return centres, contacts


def bounce(rng: np.random.Generator, f: Frame) -> Scene:
    bg_name, bg, grad = pick_background(rng)
    video = render.background(f.t, f.h, f.w, bg, grad)
    audio = np.zeros((f.channels, f.n), np.float32)
    count = 1 if rng.uniform() < 0.7 else 2
    colour_names = list(COLOURS)
    chosen = rng.choice(len(colour_names), size=count, replace=False)
    objects, events, masks = [], [], []
    for k in range(count):
        shape = SHAPES[rng.integers(len(SHAPES))]
        size = SIZES[rng.integers(len(SIZES))]
        colour = colour_names[chosen[k]]
        radius = (0.09 if size == "small" else 0.15) * f.scale
        centres, contacts = simulate_bounces(rng, f, radius)
        mask = render.shape_mask(shape, centres, radius, f.h, f.w)
        render.paint(video, mask, COLOURS[colour])
        masks = [m * (1.0 - mask) for m in masks] + [mask]  # the later object hides the earlier
        for tc, vn in contacts:
            x = centres[min(f.t - 1, round(tc * f.fps)), 0]
            snd = sounds.impact(shape, 1.0 if size == "small" else 1.6, min(1.0, 0.4 + 0.5 * vn), f.sr, rng)
            mix_in(audio, snd, round(tc * f.sr), pan=float(2 * x / f.w - 1))
            events.append(tc)
        objects.append({"shape": shape, "colour": colour, "size": size, "contacts": [c[0] for c in contacts]})
    attrs = {
        "objects": objects,
        "shape": objects[0]["shape"],
        "colour": objects[0]["colour"],
        "size": objects[0]["size"],
        "sound": SHAPE_SOUNDS[objects[0]["shape"]],
        "background": bg_name,
    }
    return Scene(video, audio, attrs, sorted(events), masks=masks)


# ------------------------------------------------------------------------------------------
# talk
# ------------------------------------------------------------------------------------------
MOUTH = (0.35, 0.05, 0.08)
SKIN = ((0.96, 0.80, 0.65), (0.85, 0.64, 0.46), (0.62, 0.43, 0.30), (0.42, 0.28, 0.20))


def draw_face(video: np.ndarray, cx: float, cy: float, s: float, skin, opening: np.ndarray, width: np.ndarray) -> None:
    """A face of unit `s` (head radius 0.36 s) centred at (cx, cy), its mouth following per-frame opening and width
    (0..1, shape (T,)), painted into video (T, H, W, 3) in place."""
    t, h, w = video.shape[:3]
    still = np.tile(np.array([[cx, cy]], np.float32), (t, 1))
    render.paint(video, render.shape_mask("circle", still, 0.36 * s, h, w), skin)
    for ex in (-0.13, 0.13):
        eye = np.tile(np.array([[cx + ex * s, cy - 0.09 * s]], np.float32), (t, 1))
        render.paint(video, render.shape_mask("circle", eye, 0.045 * s, h, w), (0.1, 0.1, 0.12))
    half_w = (0.1 + 0.05 * width) * s  # rounded lips are narrow, spread lips wide
    half_h = (0.012 + 0.115 * opening) * s
    render.paint(video, render.ellipse_mask(cx, cy + 0.17 * s, half_w, half_h, h, w), MOUTH)


def talk(rng: np.random.Generator, f: Frame) -> Scene:
    """A face speaking the caption's words (eSpeak NG); the mouth's opening and width follow the phonemes."""
    bg_name, bg, grad = pick_background(rng)
    video = render.background(f.t, f.h, f.w, bg, grad)
    voice = list(VOICES)[rng.integers(len(VOICES))]
    said = speak(rng, f.n, f.sr, voice)
    opening = visemes.per_frame(said.opening, f.t, f.fps)  # (t,) mean over each frame's span
    width = visemes.per_frame(said.width, f.t, f.fps)
    skin = SKIN[rng.integers(len(SKIN))]
    draw_face(video, f.w / 2, f.h / 2, f.scale, skin, opening, width)
    audio = np.zeros((f.channels, f.n), np.float32)
    mix_in(audio, said.audio, 0, pan=0.0)
    attrs = {"voice": voice, "pitch": said.speaker["pitch"], "words": said.words, "skin": SKIN.index(skin),
             "background": bg_name, "speaker": said.speaker}  # fmt: skip
    vowels = visemes.vowel_onsets(said.phonemes)
    truth = {"phonemes": said.phonemes, "word_times": said.word_times, "mouth_width": width.tolist(),
             "visemes": [(visemes.viseme_of(name), t) for name, t in said.phonemes]}  # fmt: skip
    return Scene(video, audio, attrs, vowels, mouth=opening.tolist(), extra=truth)


# ------------------------------------------------------------------------------------------
# blink
# ------------------------------------------------------------------------------------------
def lit_frames(intervals: list[tuple[float, float]], f: Frame) -> np.ndarray:
    """(T,) 1 in the frames whose time k / fps lies in one of the [start, end) intervals, else 0."""
    times = np.arange(f.t) / f.fps
    lit = np.zeros(f.t, np.float32)
    for a, b in intervals:
        lit[(times >= a) & (times < b)] = 1.0
    return lit


def draw_lamp(
    video: np.ndarray, cx: float, cy: float, radius: float, shape: str, colour, lit: np.ndarray
) -> np.ndarray:
    """A lamp, dim at a quarter of `colour` and bright with a halo in the frames where lit (T,) is 1, painted into
    video (T, H, W, 3) in place; returns its coverage (T, H, W)."""
    t, h, w = video.shape[:3]
    col = np.asarray(colour, np.float32)
    per_frame = (0.25 + 0.75 * lit)[:, None] * col[None, :]
    centre = np.tile(np.array([[cx, cy]], np.float32), (t, 1))
    halo = render.shape_mask("circle", centre, 1.7 * radius, h, w) * (0.35 * lit)[:, None, None]
    render.paint(video, halo, col)
    lamp = render.shape_mask(shape, centre, radius, h, w)
    render.paint(video, lamp, per_frame)
    return lamp


def blink(rng: np.random.Generator, f: Frame) -> Scene:
    bg_name, bg, grad = pick_background(rng)
    video = render.background(f.t, f.h, f.w, bg, grad)
    colour_names = list(COLOURS)
    colour = colour_names[rng.integers(len(colour_names))]
    shape = LAMP_SHAPES[rng.integers(len(LAMP_SHAPES))]
    pitch_name = list(PITCHES)[rng.integers(len(PITCHES))]
    radius = 0.14 * f.scale
    cx = rng.uniform(0.25, 0.75) * f.w
    cy = rng.uniform(0.3, 0.7) * f.h
    intervals, t = [], rng.uniform(0.1, 0.45)
    while t < f.duration - 0.1:
        dur = rng.uniform(0.12, 0.32)
        intervals.append((t, min(t + dur, f.duration)))
        t += dur + rng.uniform(0.15, 0.55)
    lamp = draw_lamp(video, cx, cy, radius, shape, COLOURS[colour], lit_frames(intervals, f))
    audio = np.zeros((f.channels, f.n), np.float32)
    for a, b in intervals:
        mix_in(audio, sounds.beep(b - a, PITCHES[pitch_name], f.sr), round(a * f.sr), pan=float(2 * cx / f.w - 1))
    attrs = {"colour": colour, "shape": shape, "pitch": pitch_name, "background": bg_name, "intervals": intervals}
    return Scene(video, audio, attrs, [a for a, _ in intervals], masks=[lamp])


FAMILY_FNS = {"bounce": bounce, "talk": talk, "blink": blink}
