"""eSpeak NG through its C API (ctypes), from the library and voice data inside the `espeakng-loader` wheel: no root
and no system package. Synthesis returns the waveform and the synthesizer's own word and phoneme events with their
sample positions, which drive the talking heads' mouths (avgen/data/avworld/visemes.py).

eSpeak NG keeps one global synthesizer per process, and its wave generator carries state from one utterance to the
next that neither espeak_Terminate nor a new espeak_Initialize resets (measured: the same call gives a few samples
more or less each time). So the process initialises the library once and never speaks itself: each utterance is
spoken by a forked child that starts from that pristine state, with eSpeak's random seed set, and sends back the
samples and events through a pipe. A clip then depends only on the arguments (same text, voice, rate, pitch and seed:
the same samples), at about 2 ms of fork per utterance.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen.errors import InputError

AUDIO_OUTPUT_SYNCHRONOUS = 0x02
INITIALIZE_PHONEME_EVENTS = 0x0001
CHARS_UTF8 = 1
SSML = 0x10
POS_CHARACTER = 1
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_END, EVENT_PHONEME = 0, 1, 5, 7
RATE, VOLUME, PITCH, RANGE, WORDGAP = 1, 2, 3, 4, 7  # espeak_PARAMETER


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT in speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]  # fmt: skip


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phoneme:
    name: str  # eSpeak's phoneme mnemonic, e.g. "h", "@", "l", "oU"
    start: int  # sample at the synthesizer's rate
    word: int  # index of the word it belongs to


@dataclass
class Speech:
    audio: np.ndarray  # (n,) float32 in [-1, 1] at sample_rate
    sample_rate: int
    phonemes: list[Phoneme]
    words: list[tuple[int, int]]  # (start sample, end sample) of each word


class _Engine:
    """The process's one eSpeak NG instance, initialised on first use; calls are serialised by a lock."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # a dependency: reaching this means a broken install
            raise InputError("avworld speech needs the espeakng-loader package: pip install espeakng-loader") from e
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        data = Path(espeakng_loader.get_data_path())
        rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data.parent).encode(),
                                          INITIALIZE_PHONEME_EVENTS)  # fmt: skip
        if rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise from {data} ({rate})")
        self.rate = rate
        self.lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # kept referenced: eSpeak calls it
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            name = e.id.string.decode("utf-8", "replace") if e.type == EVENT_PHONEME else ""
            self._events.append((e.type, e.audio_position, e.id.number if e.type == EVENT_WORD else 0, name))
            i += 1
        return 0

    def speak_here(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int):
        """Speak in this process: (samples, raw events). Only ever called in a fresh fork (see the module doc)."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise InputError(f"eSpeak NG has no voice {voice!r}")
        for key, value in ((RATE, rate), (PITCH, pitch), (RANGE, pitch_range), (VOLUME, 100), (WORDGAP, 0)):
            self.lib.espeak_SetParameter(key, int(value), 0)
        self.lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
        data = text.encode("utf-8")
        self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8 | SSML, None, None)
        self.lib.espeak_Synchronize()
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return audio, self._events

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int) -> Speech:
        with self.lock:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: speak from the pristine state, send, leave without any cleanup of the parent's
                code = 0
                try:
                    audio, events = self.speak_here(text, voice, rate, pitch, pitch_range, seed)
                    head = json.dumps({"events": events, "n": len(audio)}).encode()
                    _write_all(w, len(head).to_bytes(8, "little") + head + audio.astype("<f4").tobytes())
                except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
                    _write_all(w, (0).to_bytes(8, "little") + repr(e).encode())
                    code = 1
                finally:
                    os._exit(code)
            os.close(w)
            with os.fdopen(r, "rb") as f:
                blob = f.read()
            _, status = os.waitpid(pid, 0)
        size = int.from_bytes(blob[:8], "little")
        if status != 0 or size == 0:
            raise InputError(f"eSpeak NG could not speak {text[:40]!r} with voice {voice!r}: {blob[8:200].decode()}")
        head = json.loads(blob[8 : 8 + size])
        audio = np.frombuffer(blob[8 + size :], dtype="<f4").astype(np.float32)
        return _speech(audio[: head["n"]], self.rate, [tuple(e) for e in head["events"]])


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _speech(audio: np.ndarray, rate: int, events: list[tuple[int, int, int, str]]) -> Speech:
    """Raw events (type, ms, word number, phoneme) -> phonemes and word spans in samples."""
    to_sample = lambda ms: min(len(audio), round(ms * rate / 1000))
    phonemes, starts, word = [], [], -1
    for kind, ms, _, name in events:
        if kind == EVENT_WORD:
            word += 1
            starts.append(to_sample(ms))
        elif kind == EVENT_PHONEME and name:
            phonemes.append(Phoneme(name, to_sample(ms), max(word, 0)))
    ends = [*starts[1:], len(audio)]
    words = []
    for w, (s, e) in enumerate(zip(starts, ends, strict=True)):  # a word ends where its last sound does
        sounding = [i for i, p in enumerate(phonemes) if p.word == w and not p.name.startswith("_")]
        after = [p.start for p in phonemes[sounding[-1] + 1 :] if p.start > s] if sounding else []
        words.append((s, min([e, *after[:1]])))
    return Speech(audio, rate, phonemes, words)


@functools.lru_cache(maxsize=1)
def engine() -> _Engine:
    return _Engine()


def synthesize(text: str, voice: str = "en-us", rate: int = 160, pitch: int = 50, pitch_range: int = 50,
               seed: int = 0) -> Speech:  # fmt: skip
    """Speak `text` (SSML allowed: <break time="300ms"/>) with an eSpeak NG voice name (a variant after "+", e.g.
    "en-us+f3"), rate in words per minute, pitch and pitch range 0-100 (eSpeak's scale), and eSpeak's random seed
    (breath and noise sources)."""
    return engine().synthesize(text, voice, rate, pitch, pitch_range, seed)
