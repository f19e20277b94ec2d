"""The talking heads' speech: the caption's words spoken by eSpeak NG (avgen/data/avworld/espeak.py) with a voice,
variant, pitch and rate drawn per speaker, and the mouth tracks its phoneme events drive (visemes.py).

A speaker's pitch is drawn in the caption's voice range (vocab.VOICES, in Hz) and reached through a calibration of
each eSpeak variant (its median F0, as avgen.metrics.attributes.estimate_pitch reads it, at eSpeak pitch 20/40/60/80
on "hello river apple seven", measured once), so "a man with a deep voice" stays true to the pitch detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd

import numpy as np
from scipy.signal import resample_poly

from avgen.data.avworld import visemes
from avgen.data.avworld.espeak import synthesize
from avgen.data.avworld.vocab import VOICES, WORDS

CALIBRATION_PARAMS = (20, 40, 60, 80)
# eSpeak variant -> median F0 (Hz) at the pitch parameters above, per caption voice
VARIANTS: dict[str, dict[str, tuple[float, ...]]] = {
    "low": {"m1": (84, 91, 106, 128), "m2": (79, 91, 113, 143), "m3": (85, 96, 116, 142), "m4": (84, 91, 104, 125),
            "m5": (83, 94, 113, 139), "m6": (85, 93, 113, 140), "m7": (91, 99, 117, 143), "klatt": (90, 94, 114, 138)},
    "high": {"f1": (140, 165, 203, 254), "f2": (152, 180, 219, 267), "f3": (168, 198, 232, 281),
             "f4": (136, 163, 200, 250), "f5": (155, 188, 232, 286), "steph": (133, 168, 216, 278)},
}  # fmt: skip
ACCENTS = ("en-us",)  # British voices read 20-35 % WER through the US-English recogniser (vs 12 %)
RATE_WPM = (130, 200)
MAX_WORDS = 5


@dataclass
class Utterance:
    audio: np.ndarray  # (n,) float32 at the clip's rate, placed at its start time
    words: list[str]
    word_times: list[tuple[float, float]]  # (start, end) s of each word in the clip
    phonemes: list[tuple[str, float]]  # (eSpeak phoneme, start s)
    opening: np.ndarray  # (1000 Hz track over the clip) mouth opening 0..1
    width: np.ndarray  # (1000 Hz track) mouth width 0 rounded .. 1 spread
    speaker: dict  # voice, variant, accent, pitch (Hz), rate (wpm)


def espeak_pitch(variant_f0: tuple[float, ...], hz: float) -> int:
    """The eSpeak pitch parameter at which a variant speaks at about `hz` (interpolated in its calibration)."""
    return int(round(np.interp(hz, variant_f0, CALIBRATION_PARAMS)))


def draw_speaker(rng: np.random.Generator, voice: str) -> dict:
    """A speaker of `voice` ("low" or "high"): eSpeak variant, accent, pitch (Hz and eSpeak's), rate, range."""
    variants = VARIANTS[voice]
    variant = sorted(variants)[int(rng.integers(len(variants)))]
    lo, hi = VOICES[voice]
    hz = float(rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)))  # a margin inside the range
    return {"voice": voice, "variant": variant, "accent": ACCENTS[int(rng.integers(len(ACCENTS)))],
            "pitch": hz, "espeak_pitch": espeak_pitch(variants[variant], hz),
            "rate": int(rng.integers(RATE_WPM[0], RATE_WPM[1] + 1)), "range": int(rng.integers(30, 71))}  # fmt: skip


def speak(rng: np.random.Generator, n: int, sr: int, voice: str) -> Utterance:
    """Up to MAX_WORDS words of the vocabulary, spoken so they end before the clip does (n samples at sr)."""
    spk = draw_speaker(rng, voice)
    start = float(rng.uniform(0.05, 0.35))
    seed = int(rng.integers(2**31))
    words = [WORDS[int(i)] for i in rng.integers(len(WORDS), size=MAX_WORDS)]
    pauses = np.where(rng.random(MAX_WORDS) < 0.5, rng.integers(80, 450, size=MAX_WORDS), 0)  # ms after a word
    most = MAX_WORDS
    room = n / sr - start - 0.05
    for k in range(most, 0, -1):  # up to `most` words, as many as fit
        text = " ".join(w + (f' <break time="{pauses[i]}ms"/>' if pauses[i] and i < k - 1 else "")
                        for i, w in enumerate(words[:k]))  # fmt: skip
        s = _synthesize(text, spk, seed)
        end = s.words[-1][1] if s.words else len(s.audio)
        if end / s.sample_rate <= room or k == 1:
            break
    return _place(s, words[:k], start, n, sr, spk)


def _place(s, words: list[str], start: float, n: int, sr: int, spk: dict) -> Utterance:
    g = gcd(sr, s.sample_rate)
    voice = resample_poly(s.audio.astype(np.float64), sr // g, s.sample_rate // g).astype(np.float32)
    audio = np.zeros(n, np.float32)
    s0 = round(start * sr)
    seg = voice[: max(0, n - s0)]
    audio[s0 : s0 + len(seg)] = seg
    to_s = lambda sample: start + sample / s.sample_rate
    phonemes = [(p.name, to_s(p.start)) for p in s.phonemes]
    word_times = [(to_s(a), to_s(b)) for a, b in s.words[: len(words)]]
    loud = visemes.loudness_track(audio, sr)
    at = [(name, round(t * sr)) for name, t in [("_", 0.0), *phonemes]]  # rest before the first phoneme
    opening, width = visemes.mouth_tracks(at, n, sr, loud)
    return Utterance(audio, words, word_times, phonemes, opening, width, spk)


def _synthesize(text: str, spk: dict, seed: int):
    return synthesize(text, f"{spk['accent']}+{spk['variant']}", spk["rate"], spk["espeak_pitch"], spk["range"], seed)


def say(words: list[str], spk: dict, seed: int, sr: int, pauses_ms: Sequence[int] = ()) -> Utterance:
    """`words` spoken on their own by speaker `spk` (from `draw_speaker`), `pauses_ms[i]` of silence after word i:
    an utterance that starts at 0 s and lasts as long as the synthesizer's output (its own silences included), its
    mouth tracks driven by its own loudness (the timed scenes place it in a clip with `voiced_span`)."""
    pauses = [*pauses_ms[: len(words) - 1], *[0] * len(words)][: len(words)]
    text = " ".join(w + (f' <break time="{int(p)}ms"/>' if p and i < len(words) - 1 else "")
                    for i, (w, p) in enumerate(zip(words, pauses, strict=True)))  # fmt: skip
    s = _synthesize(text, spk, seed)
    g = gcd(sr, s.sample_rate)
    n = -(-len(s.audio) * (sr // g) // (s.sample_rate // g))  # resample_poly's output length
    return _place(s, list(words), 0.0, n, sr, spk)


def voiced_span(audio: np.ndarray, rel: float = 0.01) -> tuple[int, int]:
    """(first, last + 1) sample of a voice whose magnitude reaches `rel` of its peak; (0, 0) for silence."""
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    loud = np.flatnonzero(np.abs(audio) >= rel * peak) if peak > 0 else np.array([], int)
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, 0)
