"""eSpeak NG through its C API (ctypes), from the library and voice data inside the `espeakng-loader` wheel: no root
and no system package. Synthesis returns the waveform and the synthesizer's own word and phoneme events with their
sample positions, which drive the talking heads' mouths (avgen/data/avworld/visemes.py).

eSpeak NG keeps one global synthesizer per process, and its wave generator carries state from one utterance to the
next that neither espeak_Terminate nor a new espeak_Initialize resets (measured: the same call gives a few samples
more or less each time). So a small helper process, the zygote (espeak_zygote.py, standard library only), initialises
the library once and never speaks itself: each utterance is spoken by a child forked from that pristine state, with
eSpeak's random seed set, which sends back the samples and events. A clip then depends only on the arguments (same
text, voice, rate, pitch and seed: the same samples). Forking the small zygote costs about a millisecond; forking the
process that trains (torch and a model in memory) cost 60 ms an utterance.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avgen.data.avworld.espeak_zygote import EVENT_PHONEME, EVENT_WORD, FRAME
from avgen.errors import InputError


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
    """The process's line to its eSpeak NG zygote (espeak_zygote.py), started on first use; calls are serialised by
    a lock. A forked copy of this process (a data-loader worker) starts a zygote of its own."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # a dependency: reaching this means a broken install
            raise InputError("avworld speech needs the espeakng-loader package: pip install espeakng-loader") from e
        data = Path(espeakng_loader.get_data_path())
        self.args = [sys.executable, "-I", str(Path(__file__).with_name("espeak_zygote.py")),
                     espeakng_loader.get_library_path(), str(data.parent)]  # fmt: skip
        self.lock = threading.Lock()
        self.pid, self.proc = -1, None
        self.rate = 0

    def _zygote(self) -> subprocess.Popen:
        if self.proc is None or self.pid != os.getpid() or self.proc.poll() is not None:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.pid = os.getpid()
            status, payload = self._frame()
            if status != 0:
                raise RuntimeError(f"eSpeak NG failed to start: {payload[:200].decode()}")
            self.rate = int(json.loads(payload)["rate"])
        return self.proc

    def _frame(self) -> tuple[int, bytes]:
        head = self.proc.stdout.read(FRAME.size)
        if len(head) < FRAME.size:
            raise RuntimeError(f"the eSpeak NG zygote ({self.args[2]}) exited unexpectedly (code {self.proc.poll()})")
        status, size = FRAME.unpack(head)
        return status, self.proc.stdout.read(size)

    def synthesize(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int) -> Speech:
        request = {"text": text, "voice": voice, "rate": int(rate), "pitch": int(pitch),
                   "pitch_range": int(pitch_range), "seed": int(seed)}  # fmt: skip
        with self.lock:
            proc = self._zygote()
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            status, blob = self._frame()
        if status != 0:
            raise InputError(f"eSpeak NG could not speak {text[:40]!r} with voice {voice!r}: {blob[:200].decode()}")
        size = int.from_bytes(blob[:8], "little")
        head = json.loads(blob[8 : 8 + size])
        audio = np.frombuffer(blob[8 + size :], dtype="<i2").astype(np.float32) / 32768.0
        return _speech(audio[: head["n"]], self.rate, [tuple(e) for e in head["events"]])


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
