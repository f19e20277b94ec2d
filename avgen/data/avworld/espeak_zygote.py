"""The eSpeak NG zygote: a small process that loads eSpeak NG once and speaks every utterance in a child forked from
that pristine state (see avgen/data/avworld/espeak.py for why). It imports the standard library only, so a fork costs
about a millisecond; forking the training process itself (torch and a model loaded) cost 60 ms an utterance.

    python -I espeak_zygote.py LIBRARY DATA_DIR    # started by espeak.py, never by hand

Protocol over stdin / stdout: the zygote first writes one frame with {"rate": Hz}; then for each request line (JSON:
text, voice, rate, pitch, pitch_range, seed) it writes one frame, status 0 and (8-byte header length, JSON header
{"events": [...], "n": samples}, int16 samples) or status 1 and the error. A frame is <status int32><length uint64>
<payload>. The zygote exits when its stdin closes, so it never outlives the process that started it.
"""

import ctypes
import json
import os
import struct
import sys

AUDIO_OUTPUT_SYNCHRONOUS = 0x02
INITIALIZE_PHONEME_EVENTS = 0x0001
CHARS_UTF8 = 1
SSML = 0x10
POS_CHARACTER = 1
EVENT_LIST_TERMINATED, EVENT_WORD, EVENT_PHONEME = 0, 1, 7
RATE, VOLUME, PITCH, RANGE, WORDGAP = 1, 2, 3, 4, 7  # espeak_PARAMETER
FRAME = struct.Struct("<iQ")


class _Id(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):  # espeak_EVENT in speak_lib.h
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]  # fmt: skip


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class Synth:
    """eSpeak NG initialised in this process; speak() is only ever called in a fresh fork of it."""

    def __init__(self, library: str, data_dir: str) -> None:
        lib = self.lib = ctypes.CDLL(library)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]  # fmt: skip
        self.rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_dir.encode(), INITIALIZE_PHONEME_EVENTS)
        if self.rate <= 0:
            raise RuntimeError(f"eSpeak NG failed to initialise from {data_dir} ({self.rate})")
        self.pcm: list[bytes] = []
        self.events: list[tuple[int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # kept referenced: eSpeak calls it
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self.pcm.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            name = e.id.string.decode("utf-8", "replace") if e.type == EVENT_PHONEME else ""
            self.events.append((e.type, e.audio_position, e.id.number if e.type == EVENT_WORD else 0, name))
            i += 1
        return 0

    def speak(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int) -> bytes:
        """(header length, JSON header, int16 samples) of one utterance."""
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        for key, value in ((RATE, rate), (PITCH, pitch), (RANGE, pitch_range), (VOLUME, 100), (WORDGAP, 0)):
            self.lib.espeak_SetParameter(key, int(value), 0)
        self.lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
        data = text.encode("utf-8")
        self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8 | SSML, None, None)
        self.lib.espeak_Synchronize()
        pcm = b"".join(self.pcm)
        head = json.dumps({"events": self.events, "n": len(pcm) // 2}).encode()
        return len(head).to_bytes(8, "little") + head + pcm


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_all(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, 1 << 16):
        parts.append(chunk)
    return b"".join(parts)


def in_fork(synth: Synth, request: dict) -> tuple[int, bytes]:
    """(status, payload) of one request, spoken by a child forked from the pristine state."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: speak, send, leave without any cleanup
        os.close(r)
        code = 0
        try:
            payload = synth.speak(**request)
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which raises
            payload, code = str(e).encode(), 1
        try:
            write_all(w, payload)
        finally:
            os._exit(code)
    os.close(w)
    blob = read_all(r)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if status != 0 and not blob:
        blob = f"the synthesizer process died (wait status {status})".encode()
    return (0 if status == 0 else 1), blob


def serve(library: str, data_dir: str) -> None:
    out = sys.stdout.buffer

    def send(status: int, payload: bytes) -> None:
        out.write(FRAME.pack(status, len(payload)) + payload)
        out.flush()

    synth = Synth(library, data_dir)
    send(0, json.dumps({"rate": synth.rate}).encode())
    for line in sys.stdin.buffer:
        send(*in_fork(synth, json.loads(line)))


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2])
