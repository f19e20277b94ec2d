"""Scenes with timelines: who says what, and when. Each clip's meta["script"] is its ground-truth timeline.

- "dialogue": a man and a woman side by side (eSpeak NG voices), taking turns: 2-4 lines (as many as fit) of 1-3
  words, with pauses between them; each mouth moves only while its own line sounds, the other stays closed.
- "scripted": one face on one side speaks a line (with pauses between its words, sometimes); on the other side a lamp
  lights once with its beep (before or after the line) and/or an object drops onto a shelf with its impact sound
  (always after the line).

meta["script"]: [{"start", "end", "speaker", "text"}]: first one untimed line (start None) that describes the scene,
then one line per event in time order, times in s rounded to 0.01: speech from its first to its last voiced sample
(speaker "left" or "right"), the lamp over its lit interval, an impact at its contact (end None).
meta["lines"][i] says what script line i is on screen: "region" (a key of meta["regions"], None for the untimed line),
"kind" and, for speech, the words with their times and phonemes. meta["regions"]: pixel boxes [y0, y1, x0, x1]
(slices) of the mouths, the lamp and the dropping object's path, at positions fixed per family and side (`regions`):
a metric reads generated frames at the same places without reading meta.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, floor

import numpy as np

from avgen.data.avworld import render, sounds, visemes
from avgen.data.avworld.captions import with_article
from avgen.data.avworld.scenes import SKIN, Frame, Scene, draw_face, draw_lamp, lit_frames, mix_in, pick_background
from avgen.data.avworld.speech import Utterance, draw_speaker, say, voiced_span
from avgen.data.avworld.vocab import (
    COLOURS,
    IMPACT_SOUND,
    LAMP_SHAPES,
    PERSON,
    PITCHES,
    SHAPES,
    SIDES,
    VOICES,
    WORDS,
)

# Layout, in fractions of the frame, for a face on the left (a face on the right mirrors it: x -> 1 - x).
FACE_X, FACE_Y = 0.27, 0.5  # face centre
FACE_UNIT = 0.56  # draw_face's unit, in frame scales (min(h, w)): the head's radius is 0.2 of the frame
LAMP_X, LAMP_Y, LAMP_R = 0.85, 0.2, 0.09  # scripted: the lamp, on the side opposite the face
DROP_X, DROP_TOP, DROP_R = 0.6, 0.3, 0.09  # scripted: the dropping object's column, where it hangs, its size
SHELF = (0.84, 0.89, 0.5, 0.97)  # y0, y1, x0, x1 of the shelf it lands on
SHELF_COLOUR = (0.55, 0.38, 0.22)
HAIR = ((0.10, 0.07, 0.05), (0.45, 0.25, 0.10), (0.85, 0.70, 0.35), (0.03, 0.03, 0.03))
BOTTOM = {"circle": 1.0, "square": 0.85, "triangle": 0.5}  # how far below its centre a shape reaches, in radii
END_MARGIN = 0.05  # s: every timed line ends this long before the clip does
ONE_WORD = 0.6  # s: about the longest one-word line (the dialogue keeps room for one after the first)


def _x(frac: float, side: str, w: int) -> float:
    return (frac if side == "left" else 1.0 - frac) * w


def _box(cy: float, cx: float, ry: float, rx: float, h: int, w: int) -> list[int]:
    return [max(0, floor(cy - ry)), min(h, ceil(cy + ry)), max(0, floor(cx - rx)), min(w, ceil(cx + rx))]


def regions(family: str, h: int, w: int, side: str = "left") -> dict[str, list[int]]:
    """Pixel boxes [y0, y1, x0, x1] in frames of h x w: dialogue: both mouths ("left", "right"); scripted, with the
    face on `side`: its mouth (key `side`), the lamp with its halo ("lamp") and the dropping object's path ("object").
    Fixed per family and side: no clip's meta is needed to find them."""
    s = min(h, w)
    u = FACE_UNIT * s
    mouth = lambda at: _box(FACE_Y * h + 0.17 * u, _x(FACE_X, at, w), 0.127 * u + 1, 0.15 * u + 1, h, w)
    if family == "dialogue":
        return {at: mouth(at) for at in SIDES}
    halo = 1.7 * LAMP_R * s + 1
    drop = _box((DROP_TOP * h + SHELF[0] * h) / 2, _x(DROP_X, side, w), (SHELF[0] - DROP_TOP) * h / 2 + DROP_R * s + 1,
                DROP_R * s + 1, h, w)  # fmt: skip
    return {side: mouth(side), "lamp": _box(LAMP_Y * h, _x(LAMP_X, side, w), halo, halo, h, w), "object": drop}


def _person(rng: np.random.Generator, voice: str, skin: int) -> dict:
    return {"voice": voice, "speaker": draw_speaker(rng, voice), "skin": skin, "hair": int(rng.integers(len(HAIR)))}


def _draw_person(video: np.ndarray, side: str, person: dict, opening: np.ndarray, width: np.ndarray) -> None:
    """Hair (short on a man, long on a woman), then the face at its fixed place on `side`."""
    t, h, w = video.shape[:3]
    u = FACE_UNIT * min(h, w)
    cx, cy = _x(FACE_X, side, w), FACE_Y * h
    if person["voice"] == "low":
        hair = render.shape_mask("circle", np.tile([[cx, cy - 0.07 * u]], (t, 1)), 0.38 * u, h, w)
    else:
        hair = render.ellipse_mask(cx, cy + 0.1 * u, np.full(t, 0.47 * u), np.full(t, 0.52 * u), h, w)
    render.paint(video, hair, HAIR[person["hair"]])
    draw_face(video, cx, cy, u, SKIN[person["skin"]], opening, width)


@dataclass
class Said:
    """A line spoken on its own (`utt`, from 0 s) and placed in the clip: its sample 0 lands on clip sample `at`."""

    side: str
    utt: Utterance
    at: int
    voiced: tuple[int, int]  # its first and last + 1 voiced samples, in the utterance

    def span(self, sr: int) -> tuple[float, float]:
        return (self.at + self.voiced[0]) / sr, (self.at + self.voiced[1]) / sr

    def script(self, sr: int) -> tuple[dict, dict]:
        """(script line, what it is on screen)."""
        a, b = self.span(sr)
        shift = self.at / sr
        inside = lambda t: round(min(max(t + shift, a), b), 3)  # eSpeak's word events, within the voiced span
        times = [[inside(x), inside(y)] for x, y in self.utt.word_times]
        text = f"says '{' '.join(self.utt.words)}'"
        line = {"start": round(a, 2), "end": round(b, 2), "speaker": self.side, "text": text}
        truth = {"region": self.side, "kind": "speech", "words": list(self.utt.words), "word_times": times,
                 "phonemes": [[name, round(t + shift, 3)] for name, t in self.utt.phonemes]}  # fmt: skip
        return line, truth

    def vowels(self, sr: int) -> list[float]:
        a, b = self.span(sr)
        return [t + self.at / sr for t in visemes.vowel_onsets(self.utt.phonemes) if a <= t + self.at / sr < b]


def _fit(words: list[str], pauses: list[int], spk: dict, seed: int, sr: int, room: float):
    """The longest prefix of `words` (one word at least) whose voice lasts at most `room` s: (utterance, voiced span),
    or None when even one word is too long."""
    for k in range(len(words), 0, -1):
        utt = say(words[:k], spk, seed, sr, pauses[: k - 1])
        a, b = voiced_span(utt.audio)
        if b > a and (b - a) / sr <= room:
            return utt, (a, b)
    return None


def _mouths(said: list[Said], side: str, f: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame opening and width of the mouth on `side`: its lines' tracks inside their voiced spans, closed (at
    rest) everywhere else."""
    m = int(np.ceil(f.n / f.sr * 1000))  # the 1000 Hz tracks of visemes.mouth_tracks
    opening, width = np.zeros(m, np.float32), np.full(m, visemes.VISEMES["rest"][1], np.float32)
    for s in said:
        if s.side != side:
            continue
        off = round(s.at / f.sr * 1000)
        a, b = s.span(f.sr)
        lo, hi = max(floor(a * 1000), off, 0), min(ceil(b * 1000), off + len(s.utt.opening), m)
        opening[lo:hi] = s.utt.opening[lo - off : hi - off]
        width[lo:hi] = s.utt.width[lo - off : hi - off]
    return visemes.per_frame(opening, f.t, f.fps), visemes.per_frame(width, f.t, f.fps)


def _voices(said: list[Said], f: Frame) -> np.ndarray:
    audio = np.zeros((f.channels, f.n), np.float32)
    for s in said:
        mix_in(audio, s.utt.audio, s.at, pan=2 * FACE_X - 1 if s.side == "left" else 1 - 2 * FACE_X)
    return audio


# ------------------------------------------------------------------------------------------
# dialogue
# ------------------------------------------------------------------------------------------
def _turns(rng: np.random.Generator, f: Frame, people: dict[str, dict]) -> list[Said]:
    """2 to 2 + duration // 2 s lines, alternating speakers, each started a pause (0.1-0.5 s) after the last one's
    voice ends: as many as fit in the clip, each with as many of its 1-3 words as fit (the first leaving room for a
    second; a pause shortened to 0.1 s when that lets a line fit)."""
    count = int(rng.integers(2, 2 + int(f.duration // 2) + 1))
    first = int(rng.integers(2))
    lead = rng.uniform(0.05, 0.2) if rng.random() < 0.6 else rng.uniform(0.25, 0.25 + 0.1 * f.duration)
    gaps = [float(lead), *rng.uniform(0.1, 0.5, size=count - 1).tolist()]  # the silence before each line
    plans = [(SIDES[(first + k) % 2], [WORDS[int(i)] for i in rng.integers(len(WORDS), size=int(rng.integers(1, 4)))],
              int(rng.integers(2**31))) for k in range(count)]  # fmt: skip
    end, said = 0.0, []  # end: where the last voice ends
    for k, ((side, words, seed), gap) in enumerate(zip(plans, gaps, strict=True)):
        tries = [(ONE_WORD + 0.1, gap), (0.0, gap)] if k == 0 else [(0.0, gap), (0.0, 0.1)]  # (room kept, pause)
        for keep, pause in tries:
            room = f.duration - END_MARGIN - end - pause - keep
            fit = _fit(words, [], people[side]["speaker"], seed, f.sr, room)
            if fit is not None:
                break
        if fit is None:
            break
        utt, (a, b) = fit
        said.append(Said(side, utt, round((end + pause) * f.sr) - a, (a, b)))
        end += pause + (b - a) / f.sr
    return said


def dialogue(rng: np.random.Generator, f: Frame) -> Scene:
    """A man and a woman (which side each, at random) taking turns; their mouths at fixed places (`regions`)."""
    bg_name, bg, grad = pick_background(rng)
    video = render.background(f.t, f.h, f.w, bg, grad)
    voices = list(VOICES)[:: 1 if rng.random() < 0.5 else -1]
    skins = rng.choice(len(SKIN), size=2, replace=False)
    people = {side: _person(rng, voices[k], int(skins[k])) for k, side in enumerate(SIDES)}
    said = _turns(rng, f, people)
    mouths = {side: _mouths(said, side, f) for side in SIDES}
    for side in SIDES:
        _draw_person(video, side, people[side], *mouths[side])
    scene = f"a {PERSON[people['left']['voice']]} on the left and a {PERSON[people['right']['voice']]} on the right"
    scene += f" talk against {bg_name}" if said else f" sit in silence against {bg_name}"
    timed = [s.script(f.sr) for s in said]
    attrs = {"background": bg_name, "scene": scene, "people": people,
             "timeline": [{"kind": "speech", "side": s.side, "voice": people[s.side]["voice"], "words": s.utt.words}
                          for s in said]}  # fmt: skip
    extra = {"script": [_untimed(scene), *(line for line, _ in timed)],
             "lines": [{"region": None, "kind": "scene"}, *(truth for _, truth in timed)],
             "regions": regions("dialogue", f.h, f.w),
             "mouths": {side: mouths[side][0].tolist() for side in SIDES},
             "mouth_widths": {side: mouths[side][1].tolist() for side in SIDES}}  # fmt: skip
    events = sorted(t for s in said for t in s.vowels(f.sr))
    return Scene(video, _voices(said, f), attrs, events, extra=extra)


def _untimed(text: str) -> dict:
    return {"start": None, "end": None, "speaker": None, "text": text}


# ------------------------------------------------------------------------------------------
# scripted
# ------------------------------------------------------------------------------------------
def _schedule(order: list[str], lead: float, gaps: np.ndarray, speech: float, lamp: float) -> tuple[dict, float]:
    """Start times of the events in `order` (the lamp's and the contact on the 0.01 s grid) and when the last one is
    over (a contact is heard for 0.1 s), each a gap after the one before; `speech` and `lamp`: how long they last."""
    t, times = lead, {}
    for k, event in enumerate(order):
        t += gaps[k - 1] if k else 0.0
        if event == "speech":
            times["speech"], t = t, t + speech
        elif event == "lamp":
            a = ceil(round(t * 100, 6)) / 100
            times["lamp"] = (a, round(a + lamp, 2))
            t = times["lamp"][1]
        else:
            times["drop"] = ceil(round(t * 100, 6)) / 100
            t = times["drop"] + 0.1
    return times, t


def _plan_scripted(rng: np.random.Generator, f: Frame, side: str, spk: dict) -> tuple[list[Said], dict]:
    """The line (words with pauses between them, sometimes) and when the lamp and the drop happen: as much as fits.
    Returns (the line as said, or none, {"lamp": (start, end), "drop": contact time} for the events kept)."""
    words = [WORDS[int(i)] for i in rng.integers(len(WORDS), size=int(rng.integers(1, 4)))]
    pauses = [int(p) if rng.random() < 0.5 else 0 for p in rng.integers(80, 400, size=2)]
    seed = int(rng.integers(2**31))
    kinds = (("lamp",), ("drop",), ("lamp", "drop"))[int(rng.integers(3))]
    lamp_first = bool(rng.random() < 0.35)
    lead = rng.uniform(0.05, max(0.15 * f.duration, 0.1))  # up to 0.3 s at 2 s, 0.6 s at 4 s
    gaps = rng.uniform(0.15, max(0.2 * f.duration, 0.2), size=3)  # up to 0.4 s at 2 s, 0.8 s at 4 s
    lamp = round(float(rng.uniform(0.2, 0.4)), 2)
    for keep in (kinds, kinds[-1:], ()):  # everything; then the drop (or the lamp) alone; then the line alone
        order = (["lamp"] if "lamp" in keep and lamp_first else []) + ["speech"]
        order += (["lamp"] if "lamp" in keep and not lamp_first else []) + (["drop"] if "drop" in keep else [])
        _, rest = _schedule(order, lead, gaps, 0.0, lamp)  # how long the clip is without the line
        fit = _fit(words, pauses, spk, seed, f.sr, f.duration - END_MARGIN - rest)
        if fit is not None:
            utt, (a, b) = fit
            times, _ = _schedule(order, lead, gaps, (b - a) / f.sr, lamp)
            return [Said(side, utt, round(times.pop("speech") * f.sr) - a, (a, b))], times
    return [], {}


def _drop_path(f: Frame, x: float, shape: str, contact: float, fall: float) -> np.ndarray:
    """(T, 2) centres of an object that hangs, falls from `contact - fall` s (accelerating) and lands at `contact`."""
    top, land = DROP_TOP * f.h, SHELF[0] * f.h - BOTTOM[shape] * DROP_R * f.scale
    times = np.arange(f.t) / f.fps
    progress = np.clip((times - (contact - fall)) / fall, 0.0, 1.0) ** 2
    return np.stack([np.full(f.t, x), top + (land - top) * progress], axis=1).astype(np.float32)


def _props(rng: np.random.Generator, f: Frame, video: np.ndarray, audio: np.ndarray, side: str, times: dict):
    """Draw and sound the lamp and the dropping object of `times` on the side opposite the face on `side`.
    Returns ((script line, its truth, its caption item) of each, their attributes, their masks, their event times)."""
    colours = [list(COLOURS)[int(i)] for i in rng.choice(len(COLOURS), size=2, replace=False)]
    lamp_shape, pitch = LAMP_SHAPES[int(rng.integers(len(LAMP_SHAPES)))], list(PITCHES)[int(rng.integers(len(PITCHES)))]
    shape, fall = SHAPES[int(rng.integers(len(SHAPES)))], float(rng.uniform(0.25, 0.4))
    timed, objects, masks, events = [], [], [], []
    if "lamp" in times:
        (a, b), x = times["lamp"], _x(LAMP_X, side, f.w)
        lit = lit_frames([(a, b)], f)
        masks.append(draw_lamp(video, x, LAMP_Y * f.h, LAMP_R * f.scale, lamp_shape, COLOURS[colours[0]], lit))
        mix_in(audio, sounds.beep(b - a, PITCHES[pitch], f.sr), round(a * f.sr), pan=2 * x / f.w - 1)
        objects.append({"kind": "lamp", "colour": colours[0], "shape": lamp_shape, "pitch": pitch})
        line = {"start": a, "end": b, "speaker": None, "text": f"the {colours[0]} lamp lights with a {pitch} beep"}
        timed.append((line, {"region": "lamp", "kind": "lamp", "colour": colours[0], "pitch": pitch}, objects[-1]))
        events.append(a)
    if "drop" in times:
        tc, x = times["drop"], _x(DROP_X, side, f.w)
        x0, x1 = sorted(round(_x(frac, side, f.w)) for frac in SHELF[2:])
        shelf = np.zeros((f.t, f.h, f.w), np.float32)
        shelf[:, round(SHELF[0] * f.h) : round(SHELF[1] * f.h), x0:x1] = 1.0
        render.paint(video, shelf, SHELF_COLOUR)
        mask = render.shape_mask(shape, _drop_path(f, x, shape, tc, fall), DROP_R * f.scale, f.h, f.w)
        render.paint(video, mask, COLOURS[colours[1]])
        masks.append(mask)
        mix_in(audio, sounds.impact(shape, 1.0, 0.9, f.sr, rng), round(tc * f.sr), pan=2 * x / f.w - 1)
        objects.append({"kind": "object", "colour": colours[1], "shape": shape, "size": "small"})
        text = f"the {colours[1]} {shape} drops with {IMPACT_SOUND[shape]}"
        line = {"start": tc, "end": None, "speaker": None, "text": text}
        truth = {"region": "object", "kind": "impact", "colour": colours[1], "shape": shape}
        timed.append((line, truth, {**objects[-1], "kind": "drop"}))
        events.append(tc)
    return timed, objects, masks, events


def scripted(rng: np.random.Generator, f: Frame) -> Scene:
    """A face speaks a line; on the other side a lamp lights with its beep and/or an object drops with a knock."""
    bg_name, bg, grad = pick_background(rng)
    video = render.background(f.t, f.h, f.w, bg, grad)
    side = SIDES[int(rng.integers(2))]
    person = _person(rng, list(VOICES)[int(rng.integers(len(VOICES)))], int(rng.integers(len(SKIN))))
    said, times = _plan_scripted(rng, f, side, person["speaker"])
    opening, width = _mouths(said, side, f)
    _draw_person(video, side, person, opening, width)
    audio = _voices(said, f)
    props, objects, masks, events = _props(rng, f, video, audio, side, times)
    speech = [(*s.script(f.sr), {"kind": "speech", "side": side, "voice": person["voice"], "words": s.utt.words})
              for s in said]  # fmt: skip
    timed = sorted(speech + props, key=lambda item: item[0]["start"])
    names = [with_article(o["colour"]) + (" lamp" if o["kind"] == "lamp" else f" {o['shape']} over a shelf")
             for o in objects]  # fmt: skip
    scene = f"a {PERSON[person['voice']]} on the {side}"
    scene += f", {' and '.join(names)} on the {SIDES[1 - SIDES.index(side)]}" if names else ""
    scene += f", against {bg_name}"
    attrs = {"background": bg_name, "scene": scene, "side": side, **person, "pitch": person["speaker"]["pitch"],
             "objects": objects, "timeline": [item for *_, item in timed]}  # fmt: skip
    extra = {"script": [_untimed(scene), *(line for line, *_ in timed)],
             "lines": [{"region": None, "kind": "scene"}, *(truth for _, truth, _ in timed)],
             "regions": regions("scripted", f.h, f.w, side),
             "mouths": {side: opening.tolist()}, "mouth_widths": {side: width.tolist()}}  # fmt: skip
    events = sorted(events + [t for s in said for t in s.vowels(f.sr)])
    return Scene(video, audio, attrs, events, mouth=opening.tolist(), extra=extra, masks=masks)


FAMILY_FNS = {"dialogue": dialogue, "scripted": scripted}
