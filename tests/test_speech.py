"""The talking heads' real speech (eSpeak NG from its PyPI wheel), phoneme-driven mouths, and the offline recogniser."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from avgen.data.avworld import AVWorld
from avgen.data.avworld.espeak import synthesize
from avgen.data.avworld.visemes import VISEMES, loudness_track, mouth_tracks, viseme_of
from avgen.data.avworld.vocab import WORDS
from avgen.metrics.attributes import detect_voice
from avgen.metrics.speech import intelligibility, recognise, word_error_rate


@pytest.fixture(scope="module")
def talks():
    world = AVWorld(seed=21, families=["talk"])
    return [world[i] for i in range(8)]


def test_espeak_is_deterministic_and_reports_phonemes_in_order():
    a = synthesize("hello river", "en-us+m3", 160, 40, seed=5)
    synthesize("banana tomato", "en-us+f2", 200, 70, seed=1)  # state a shared library would carry over
    b = synthesize("hello river", "en-us+m3", 160, 40, seed=5)
    assert np.array_equal(a.audio, b.audio) and a.sample_rate == 22050 and len(a.audio) > 0.5 * a.sample_rate
    starts = [p.start for p in a.phonemes]
    assert starts == sorted(starts) and [p.word for p in a.phonemes][0] == 0 and len(a.words) == 2
    names = [p.name.strip("',") for p in a.phonemes]
    assert names[:4] == ["h", "@", "l", "oU"] and "v" in names  # h@l'oU r'Iv3
    with pytest.raises(ValueError, match="no voice"):
        synthesize("x", "no-such-voice")


def test_espeak_zygote_serves_forked_processes_and_restarts():
    import os

    from avgen.data.avworld.espeak import engine

    a = synthesize("seven apples", "en-us+f3", 170, 60, seed=2)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a data-loader worker forked from a process whose zygote is running: it starts its own
        ok = np.array_equal(synthesize("seven apples", "en-us+f3", 170, 60, seed=2).audio, a.audio)
        os.write(w, b"1" if ok and engine().pid == os.getpid() else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    engine().proc.kill()  # a zygote that died is started again
    engine().proc.wait()
    assert np.array_equal(synthesize("seven apples", "en-us+f3", 170, 60, seed=2).audio, a.audio)


def test_clips_say_their_caption_with_the_captions_voice(talks):
    again = AVWorld(seed=21, families=["talk"])[3]
    assert np.array_equal(again.audio.numpy(), talks[3].audio.numpy())  # a pure function of (seed, index)
    heard = [recognise(c.audio, c.sample_rate, WORDS) for c in talks]
    said = [c.meta["attributes"]["words"] for c in talks]
    assert all(" ".join(w) in c.caption for w, c in zip(said, talks, strict=True))
    assert word_error_rate(said, heard) <= 0.25, list(zip(said, heard, strict=True))
    assert intelligibility(talks, said, WORDS)["WER vs other transcripts"] > 0.6  # chance level is far above
    assert all(detect_voice(c.audio, c.sample_rate) == c.meta["attributes"]["voice"] for c in talks)
    assert len({c.meta["attributes"]["speaker"]["variant"] for c in talks}) >= 3


def test_visemes_close_the_lips_round_and_spread():
    assert [viseme_of(p) for p in ("m", "b", "p", "'oU", "u:", "w", "i:", "'I", "f", "'a", "@", "s", "_:")] == [
        "closed", "closed", "closed", "round", "round", "round", "spread", "spread", "labiodental", "open", "mid",
        "consonant", "rest"]  # fmt: skip
    sr = 1000
    seq = [("_", 0), ("'a", 100), ("m", 300), ("'a", 400), ("u:", 600), ("i:", 800), ("_", 1000)]
    opening, width = mouth_tracks(seq, 1100, sr)
    assert opening[350] < 0.2 * opening[200] and opening[200] > 0.8 * VISEMES["open"][0]  # "m" closes the lips
    assert width[700] < 0.2 < 0.8 < width[900]  # rounded "u", spread "i"
    assert opening[300] > opening[350]  # coarticulation: the lips are still closing as "m" begins
    audio = np.ones(21000, dtype=np.float32)  # 1312.5 ms at 16 kHz (a 1.3125 s clip): 1312 whole loudness windows
    loud = loudness_track(audio, 16000)
    opening, _ = mouth_tracks([("_", 0), ("'a", 1600)], len(audio), 16000, loud)
    assert len(loud) == 1312 and len(opening) == 1313 and opening[-1] == opening[-2]  # the last part-window repeats


def test_mouth_pixels_follow_the_phoneme_driven_opening(talks):
    from avgen.metrics import mouth_sync
    from avgen.metrics.sync import mouth_movement

    for c in talks:
        truth = np.array(c.meta["mouth"])
        assert np.corrcoef(truth, mouth_movement(c.video))[0, 1] > 0.8  # pixels only
        assert len(c.meta["mouth_width"]) == len(truth) and c.meta["world_version"] == 2
        assert all(viseme in VISEMES for viseme, _ in c.meta["visemes"])
    true = [mouth_sync(c) for c in talks]
    other = [mouth_sync(dataclasses.replace(c, audio=talks[(i + 1) % 8].audio)) for i, c in enumerate(talks)]
    assert np.mean(true) > 0.8 and np.mean(true) - np.mean(other) > 0.4, (true, other)
