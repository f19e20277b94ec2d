"""Script control: does a clip do what its script's timed lines say, when they say it?

    scores = score_script(clip, script, family)  # {name: one value per line, mouth or event}; see SCORES

Reads the clip's frames and samples and its script, which is the *input*: the lines' times, speakers and quoted
words; and the boxes where the timed avworld families draw the mouths and the lamp
(`avgen.data.avworld.timelines.regions`, fixed per family and side, also input). Never `clip.meta`.

A line's kind comes from the script alone: a line with a speaker is speech (its words: those quoted in its text), an
unspoken timed line naming a lamp or a light is a lamp, any other unspoken timed line an impact. A line spans
`ScriptLine.span()` (a point event: POINT_SPAN from its start).

- speech in span: per speech line, E(own span +- TOL) / (E(own span +- TOL) + E(around)), E the speech-band
  (300-3400 Hz) energy above the room-tone floor (FLOOR_GAIN x the clip's 10th percentile, per 10 ms), "around" the
  time in no line's span (+- TOL) nearer to this line than to another speech line: energy during other speech lines,
  lamps and impacts counts for neither; 0 when the line has no such energy at all.
- speaker's mouth (two mouth boxes: dialogue): per speech line, the speaker's mouth motion within the span (+- one
  frame) over both mouths' motion there; 0.5 when neither moves (chance). Motion: a box's mean |grey frame
  difference| less the flicker floor, the lowest 10th percentile over time of any box of the layout.
- mouth in own lines: per mouth with lines, the share of its motion over the clip within its lines' spans (+- one
  frame); 0 when it never moves.
- mouth_sync in span: per speech line, `avgen.metrics.sync.mouth_sync` on the frames of its span (+- SYNC_PAD)
  cropped to the speaker's mouth box, and their audio.
- transcripts: per speech line with quoted words, (those words, what the recogniser restricted to `vocabulary` hears
  in the span widened by up to ASR_PAD, not past halfway to another timed line, between ASR_SILENCE of digital
  silence): `word_error_rate` pools them.
- lamp (video), lamp (audio), impact (audio): per lamp / impact line, whether its onset comes within ON_TIME of its
  start. Video: the k strongest rises of the lamp box's brightness (mean of max(R, G, B)) between two frames, k the
  script's lamp lines; audio: the k strongest onsets (`avgen.metrics.onsets.detect_onsets`, ranked by spectral flux)
  outside the speech lines' spans (+- TOL), k the script's lamp and impact lines.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from avgen.data.avworld.timelines import regions
from avgen.data.avworld.vocab import SIDES, TIMED_FAMILIES, WORDS
from avgen.media import AVClip
from avgen.metrics.onsets import detect_onsets, mono, onset_strength
from avgen.metrics.speech import recognise, word_error_rate
from avgen.metrics.sync import mouth_sync
from avgen.script import Script

BAND_HZ = (300.0, 3400.0)  # speech band
HOP = 0.01  # s: energy bins (20 ms Hann windows)
TOL = 0.05  # s: a line's audio span is widened by this much each side
FLOOR_GAIN = 4.0  # energy below this times the clip's 10th percentile bin is room tone (its bins scatter by ~15 %)
SYNC_PAD = 0.1  # s: mouth_sync reads the span widened by this much each side (the mouth opening and closing)
ASR_PAD = 0.1  # s: the recogniser hears the span widened by up to this much each side
ASR_SILENCE = 0.2  # s: and digital silence around that (60 held-out real lines: WER 0.13 without it, 0.07 with it)
ON_TIME = 0.125  # s: an event's onset within this of its line's start is on time
MIN_RISE = 2 / 255  # a lamp box brightening by less than this between two frames is flicker
LAMP_WORDS = ("lamp", "light", "lights", "lamps")
EVENTS = ("lamp (video)", "lamp (audio)", "impact (audio)")
SCORES = ("speech in span", "speaker's mouth", "mouth in own lines", "mouth_sync in span", "transcripts", *EVENTS)
# the rows of a report (`summarise`): row -> (target, definition in one line)
ROWS = {
    "speech energy in its span": ("≥ 0.8", "per speech line: speech-band (300-3400 Hz) energy above the room-tone "
                                  "floor in its span ±50 ms / that plus the energy in the time around it in no line's "
                                  "span (other speech lines, lamps and impacts count for neither); mean over lines"),
    "speaker's mouth moves (dialogue)": ("≥ 0.8 (chance 0.5)", "per dialogue line: motion (mean |frame difference| "
                                         "above the flicker floor) in the speaker's mouth box / in both mouth boxes, "
                                         "within its span ±1 frame"),
    "mouth moves within its own lines": ("≥ 0.8", "per mouth: the share of its motion over the clip within its own "
                                         "lines' spans ±1 frame"),
    "mouth_sync in span": ("≥ 0.8 × real", "per speech line: mouth_sync (mouth darkness vs audio RMS) on its span "
                           "±0.1 s, frames cropped to the speaker's mouth box"),
    "per-line WER": ("≤ 2 × real", "PocketSphinx restricted to avworld's words on each speech line's span (±0.1 s, "
                     "never past halfway to another line) vs the line's quoted words, pooled over lines"),
    "lamp lights on time (video)": ("≥ 0.7", "per lamp line: a (k strongest) rise of the lamp box's brightness "
                                    "within 125 ms of its start"),
    "beep on time (audio)": ("≥ 0.7", "per lamp line: one of the k strongest audio onsets outside speech lines "
                             "within 125 ms of its start"),
    "impact on time (audio)": ("≥ 0.7", "per impact line: the same for its knock"),
    "events on time (all)": ("≥ 0.7", "the three above pooled"),
}  # fmt: skip


@dataclass(frozen=True)
class Cue:
    """A timed line as the metrics read it: its kind ("speech", "lamp", "impact"), span, speaker and quoted words."""

    kind: str
    start: float
    end: float
    speaker: str | None = None
    words: tuple[str, ...] = ()


def cues(script: Script | str | Sequence) -> list[Cue]:
    """The timed lines of a script (anything Script.coerce takes), in time order."""
    out = []
    for line in Script.coerce(script).in_time_order():
        if not line.timed:
            continue
        named = set(re.findall(r"[a-z]+", line.text.lower()))
        kind = "speech" if line.speaker else "lamp" if named & set(LAMP_WORDS) else "impact"
        words = tuple(" ".join(re.findall(r"'([^']*)'", line.text)).lower().split())
        out.append(Cue(kind, *line.span(), line.speaker, words))
    return out


def script_regions(script: Script | str | Sequence, family: str, h: int, w: int) -> dict[str, list[int]]:
    """The boxes of the timed avworld `family` for this script in frames of h x w (`timelines.regions`); the face's
    side: the first timed speaker, else the first "on the left/right" of an untimed line. {} for other families."""
    if family not in TIMED_FAMILIES:
        return {}
    script = Script.coerce(script)
    sides = [line.speaker for line in script.in_time_order() if line.timed and line.speaker in SIDES]
    said = [m for line in script.lines if not line.timed for m in re.findall(r"on the (left|right)", line.text)]
    return regions(family, h, w, (sides + said + ["left"])[0])


def speech_band_energy(audio: torch.Tensor | np.ndarray, sr: int) -> np.ndarray:
    """(m,) speech-band energy above the room-tone floor in bins of HOP s (bin j centred at j * HOP s)."""
    x = mono(audio).astype(np.float64)
    n = max(1, round(HOP * sr))
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, n), 2 * n)[::n][: len(x) // n + 1]
    power = np.abs(np.fft.rfft(frames * np.hanning(2 * n), axis=1)) ** 2
    freqs = np.fft.rfftfreq(2 * n, 1 / sr)
    e = power[:, (freqs >= BAND_HZ[0]) & (freqs <= BAND_HZ[1])].sum(1)
    return np.clip(e - FLOOR_GAIN * np.percentile(e, 10), 0.0, None)


def _within(times: np.ndarray, cue: Cue, tol: float) -> np.ndarray:
    return (times >= cue.start - tol) & (times <= cue.end + tol)


def speech_in_span(clip: AVClip, lines: list[Cue]) -> list[float]:
    """Per speech line, the share of its speech-band energy inside its span (module docstring)."""
    e = speech_band_energy(clip.audio, clip.sample_rate)
    t = np.arange(len(e)) * HOP
    busy = np.zeros(len(t), bool)
    for c in lines:
        busy |= _within(t, c, TOL)
    speech, out = [c for c in lines if c.kind == "speech"], []
    for i, c in enumerate(speech):
        lo = (speech[i - 1].end + c.start) / 2 if i else -math.inf
        hi = (c.end + speech[i + 1].start) / 2 if i + 1 < len(speech) else math.inf
        inside = e[_within(t, c, TOL)].sum()
        total = inside + e[~busy & (t >= lo) & (t < hi)].sum()
        out.append(float(inside / total) if total > 0 else 0.0)
    return out


def grey(video: torch.Tensor) -> np.ndarray:
    """uint8 (T, H, W, 3) -> float (T, H, W) luminance in [0, 1], at full size (the boxes are in pixels)."""
    v = video.detach().cpu().numpy().astype(np.float32) / 255.0
    return 0.299 * v[..., 0] + 0.587 * v[..., 1] + 0.114 * v[..., 2]


def box_motion(frames: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """(T - 1,) mean |difference| of consecutive grey frames (T, H, W) in box [y0, y1, x0, x1]."""
    y0, y1, x0, x1 = box
    return np.abs(np.diff(frames[:, y0:y1, x0:x1], axis=0)).mean((1, 2)) if len(frames) > 1 else np.zeros(0)


def _mouths(clip: AVClip, boxes: dict) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(motion per mouth box (a speaker side) less the flicker floor, the times (k + 0.5) / fps of the frame pairs).
    The floor: the lowest 10th percentile over time of any box of the layout (mouths, lamp, object)."""
    frames = grey(clip.video)
    motion = {name: box_motion(frames, box) for name, box in boxes.items()}
    floor = min((float(np.percentile(m, 10)) for m in motion.values() if len(m)), default=0.0)
    mouths = {s: np.clip(motion[s] - floor, 0.0, None) for s in SIDES if s in motion}
    return mouths, (np.arange(max(len(frames) - 1, 0)) + 0.5) / clip.fps


def speaker_mouth(clip: AVClip, lines: list[Cue], boxes: dict) -> list[float]:
    """Per speech line, the share of the mouths' motion in its span that is the speaker's (two mouths only)."""
    motion, t = _mouths(clip, boxes)
    if len(motion) < 2:
        return []
    out = []
    for c in lines:
        if c.kind == "speech" and c.speaker in motion:
            span = _within(t, c, 1 / clip.fps)
            own, every = motion[c.speaker][span].sum(), sum(m[span].sum() for m in motion.values())
            out.append(float(own / every) if every > 0 else 0.5)
    return out


def mouth_in_own_lines(clip: AVClip, lines: list[Cue], boxes: dict) -> list[float]:
    """Per mouth with speech lines, the share of its motion over the clip that lies within its lines' spans."""
    motion, t = _mouths(clip, boxes)
    out = []
    for side, m in motion.items():
        own = [c for c in lines if c.kind == "speech" and c.speaker == side]
        if own:
            inside = np.logical_or.reduce([_within(t, c, 1 / clip.fps) for c in own])
            out.append(float(m[inside].sum() / m.sum()) if m.sum() > 0 else 0.0)
    return out


def span_mouth_sync(clip: AVClip, lines: list[Cue], boxes: dict) -> list[float]:
    """Per speech line, mouth_sync of its span's frames cropped to the speaker's mouth box, with their audio."""
    out, fps, sr = [], clip.fps, clip.sample_rate
    for c in lines:
        if c.kind != "speech" or c.speaker not in boxes:
            continue
        k0 = max(0, math.floor((c.start - SYNC_PAD) * fps))
        k1 = min(clip.video.shape[0], math.ceil((c.end + SYNC_PAD) * fps) + 1)
        y0, y1, x0, x1 = boxes[c.speaker]
        audio = clip.audio[:, round(k0 / fps * sr) : round(k1 / fps * sr)]
        out.append(mouth_sync(AVClip(clip.video[k0:k1, y0:y1, x0:x1], audio, fps, sr)))
    return out


def transcripts(clip: AVClip, lines: list[Cue], vocabulary: Sequence[str] = WORDS) -> list[tuple[tuple, list]]:
    """Per speech line with quoted words: (the words, the words heard in its span widened as the docstring says)."""
    out, sr = [], clip.sample_rate
    for c in lines:
        if c.kind != "speech" or not c.words:
            continue
        before = max([o.end for o in lines if o is not c and o.end <= c.start], default=-math.inf)
        after = min([o.start for o in lines if o is not c and o.start >= c.end], default=math.inf)
        a = max(c.start - ASR_PAD, (before + c.start) / 2, 0.0)
        b = min(c.end + ASR_PAD, (c.end + after) / 2)
        silence = torch.zeros(clip.audio.shape[0], round(ASR_SILENCE * sr))
        audio = torch.cat([silence, clip.audio[:, round(a * sr) : round(b * sr)].float(), silence], dim=1)
        out.append((c.words, recognise(audio, sr, vocabulary)))
    return out


def lamp_onsets(video: torch.Tensor, box: Sequence[int], fps: float, k: int) -> np.ndarray:
    """Times (s) of the k strongest rises of the box's brightness between consecutive frames (rise j -> j + 1 at
    (j + 0.5) / fps), each a local maximum of at least MIN_RISE."""
    y0, y1, x0, x1 = box
    v = video[:, y0:y1, x0:x1].float().amax(-1).mean((1, 2)).numpy() / 255.0
    r = np.diff(v)
    padded = np.concatenate([[-np.inf], r, [-np.inf]])
    peaks = np.flatnonzero((r >= padded[:-2]) & (r > padded[2:]) & (r >= MIN_RISE))
    return (peaks[np.argsort(-r[peaks])][:k] + 0.5) / fps


def _near(times: Sequence[float], t: float) -> bool:
    return bool(len(times)) and bool(np.min(np.abs(np.asarray(times) - t)) <= ON_TIME)


def event_onsets(audio: torch.Tensor, sr: int, k: int, skip: list[Cue]) -> list[float]:
    """Times (s) of the k strongest audio onsets (peak spectral flux within 10 ms before to 20 ms after the onset)
    outside the `skip` lines' spans (+- TOL)."""
    if k == 0:
        return []
    flux, rate = onset_strength(audio, sr)
    found = [float(t) for t in detect_onsets(audio, sr) if not any(_within(t, c, TOL) for c in skip)]
    strength = [flux[max(0, round((t - 0.01) * rate)) : round((t + 0.02) * rate) + 1].max() for t in found]
    return [found[i] for i in np.argsort(strength)[::-1][:k]]


def events_on_time(clip: AVClip, lines: list[Cue], boxes: dict) -> dict[str, list[bool]]:
    """Per lamp line (its video and its audio) and impact line (audio): whether its onset is on time."""
    lamps, impacts = [c for c in lines if c.kind == "lamp"], [c for c in lines if c.kind == "impact"]
    seen = lamp_onsets(clip.video, boxes["lamp"], clip.fps, len(lamps)) if lamps and "lamp" in boxes else []
    speech = [c for c in lines if c.kind == "speech"]
    heard = event_onsets(clip.audio, clip.sample_rate, len(lamps) + len(impacts), speech)
    return {
        "lamp (video)": [_near(seen, c.start) for c in lamps] if "lamp" in boxes else [],
        "lamp (audio)": [_near(heard, c.start) for c in lamps],
        "impact (audio)": [_near(heard, c.start) for c in impacts],
    }


def score_script(clip: AVClip, script: Script | str | Sequence, family: str,
                 vocabulary: Sequence[str] = WORDS) -> dict[str, list]:  # fmt: skip
    """Every score of SCORES for a clip and the script it should follow (`family`: the timed avworld layout whose
    boxes to read; another family gets the audio scores only), one value per line, mouth or event."""
    lines = cues(script)
    boxes = script_regions(script, family, clip.video.shape[1], clip.video.shape[2])
    return {
        "speech in span": speech_in_span(clip, lines),
        "speaker's mouth": speaker_mouth(clip, lines, boxes),
        "mouth in own lines": mouth_in_own_lines(clip, lines, boxes),
        "mouth_sync in span": span_mouth_sync(clip, lines, boxes),
        "transcripts": transcripts(clip, lines, vocabulary),
        **events_on_time(clip, lines, boxes),
    }


def summarise(scores: Sequence[dict[str, list]]) -> dict[str, float]:
    """`score_script` results of many clips -> the ROWS: means over lines, mouths or events (nan where there are
    none), the WER pooled over lines."""
    pooled = {k: [x for s in scores for x in s[k]] for k in SCORES}
    pairs = pooled["transcripts"]
    return {
        "speech energy in its span": _mean(pooled["speech in span"]),
        "speaker's mouth moves (dialogue)": _mean(pooled["speaker's mouth"]),
        "mouth moves within its own lines": _mean(pooled["mouth in own lines"]),
        "mouth_sync in span": _mean(pooled["mouth_sync in span"]),
        "per-line WER": word_error_rate([r for r, _ in pairs], [h for _, h in pairs]) if pairs else math.nan,
        "lamp lights on time (video)": _mean(pooled["lamp (video)"]),
        "beep on time (audio)": _mean(pooled["lamp (audio)"]),
        "impact on time (audio)": _mean(pooled["impact (audio)"]),
        "events on time (all)": _mean([x for k in EVENTS for x in pooled[k]]),
    }


def _mean(values: Sequence) -> float:
    return float(np.mean(np.asarray(values, float))) if len(values) else math.nan


def counts(scores: Sequence[dict[str, list]]) -> dict[str, int]:
    """How many lines, mouths and events the rows of `summarise` average over."""
    n = lambda k: sum(len(s[k]) for s in scores)
    return {
        "speech lines": n("speech in span"),
        "dialogue lines": n("speaker's mouth"),
        "mouths": n("mouth in own lines"),
        "lamp lines": n("lamp (audio)"),
        "impact lines": n("impact (audio)"),
    }
