"""Script control (avgen.metrics.script): each score on synthetic clips with a known answer, on real timed avworld
clips (high against their own script, low against another's), the evaluation's rows, and timed clips in the
attribute scoring."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from avgen.data.avworld import TIMED_FAMILIES, AVWorld
from avgen.data.avworld.timelines import regions
from avgen.media import AVClip
from avgen.metrics.script import (
    cues,
    events_on_time,
    mouth_in_own_lines,
    score_script,
    script_regions,
    span_mouth_sync,
    speaker_mouth,
    speech_in_span,
    summarise,
)

SR, FPS, T = 16000, 16, 32


def clip(video: np.ndarray | None = None, audio: np.ndarray | None = None) -> AVClip:
    """A 2 s clip: a grey frame and room tone unless given."""
    noise = 0.003 * np.random.default_rng(0).standard_normal(2 * SR)
    video = np.full((T, 64, 64, 3), 128, np.uint8) if video is None else video
    return AVClip(torch.from_numpy(video), torch.from_numpy((noise + (0 if audio is None else audio))[None].astype(
        np.float32)), FPS, SR)  # fmt: skip


def voice(t0: float, t1: float, f0: float = 120.0) -> np.ndarray:
    """A harmonic 'voice' (f0 and its harmonics to 3 kHz) under a Hann envelope from t0 to t1 s."""
    t, out = np.arange(2 * SR) / SR, np.zeros(2 * SR)
    a, b = round(t0 * SR), round(t1 * SR)
    out[a:b] = sum(np.sin(2 * np.pi * f0 * k * t[a:b]) / k for k in range(1, int(3000 / f0))) * np.hanning(b - a)
    return 0.3 * out / np.abs(out).max()


def tone(t0: float, t1: float, hz: float, amp: float = 0.5) -> np.ndarray:
    t, out = np.arange(2 * SR) / SR, np.zeros(2 * SR)
    a, b = round(t0 * SR), round(t1 * SR)
    out[a:b] = amp * np.sin(2 * np.pi * hz * t[a:b])
    return out


def knock(t0: float) -> np.ndarray:
    t = np.arange(2 * SR) / SR
    return np.where(t >= t0, 0.9 * np.exp(-(t - t0) / 0.02) * np.sin(2 * np.pi * 400 * t), 0.0)


def test_speech_in_span_counts_its_span_against_the_time_around_it():
    one = clip(audio=voice(0.5, 0.9))
    assert speech_in_span(one, cues("0.5-0.9 left: says 'apple'")) == [pytest.approx(1.0, abs=0.01)]
    assert speech_in_span(one, cues("1.2-1.6 left: says 'apple'"))[0] < 0.01  # said outside its span
    assert speech_in_span(clip(), cues("0.5-0.9 left: says 'apple'")) == [0.0]  # not said: room tone only
    two = clip(audio=voice(0.2, 0.6) + voice(1.0, 1.4, 220.0))
    both = speech_in_span(two, cues("0.2-0.6 left: says 'moon'\n1.0-1.4 right: says 'yes'"))
    assert both == [pytest.approx(1.0, abs=0.01)] * 2  # the other line's speech counts against neither
    beeped = clip(audio=voice(0.5, 0.9) + tone(1.2, 1.5, 660.0))
    lines = "0.5-0.9 left: says 'apple'\n1.2-1.5 the red lamp lights with a middle beep"
    assert speech_in_span(beeped, cues(lines)) == [pytest.approx(1.0, abs=0.01)]  # the lamp's span excludes it
    assert speech_in_span(beeped, cues("0.5-0.9 left: says 'apple'"))[0] < 0.6  # unscripted, it counts against


def _mouth_video(moving: slice) -> np.ndarray:
    """Grey frames whose right mouth box (dialogue) flickers in the frames of `moving`; the left one stays still."""
    video = np.full((T, 64, 64, 3), 128, np.uint8)
    y0, y1, x0, x1 = regions("dialogue", 64, 64)["right"]
    k = range(T)[moving]
    video[moving, y0:y1, x0:x1] = np.random.default_rng(1).integers(0, 255, (len(k), y1 - y0, x1 - x0, 1), np.uint8)
    return video


def test_mouth_motion_on_the_speakers_mouth_and_in_its_own_lines():
    script = "0.2-0.8 right: says 'moon'\n1.0-1.6 left: says 'yes'"
    lines, boxes = cues(script), script_regions(script, "dialogue", 64, 64)
    always = clip(_mouth_video(slice(None)))
    assert speaker_mouth(always, lines, boxes) == [1.0, 0.0]  # only the right mouth moves, all the time
    left, right = mouth_in_own_lines(always, lines, boxes)  # per mouth, in SIDES order
    assert 0.3 < right < 0.5 and left == 0.0  # its lines hold about 0.7 s of its 2 s of motion; left never moves
    in_line = clip(_mouth_video(slice(4, 13)))  # frames 4-12: 0.25-0.75 s, inside its line
    assert mouth_in_own_lines(in_line, lines, boxes) == [0.0, pytest.approx(1.0)]
    assert speaker_mouth(in_line, lines, boxes) == [1.0, 0.5]  # in the left line neither mouth moves: chance
    assert speaker_mouth(in_line, lines, {"right": boxes["right"]}) == []  # one mouth: not a dialogue


def test_mouth_sync_in_span_follows_the_audio_envelope():
    script = "0.3-1.5 left: says 'apple banana'"
    lines, boxes = cues(script), script_regions(script, "dialogue", 64, 64)
    t = np.arange(2 * SR) / SR
    env = np.where((t > 0.3) & (t < 1.5), 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t), 0.0)
    audio = 0.3 * env * np.sin(2 * np.pi * 150 * t)
    video = np.full((T, 64, 64, 3), 200, np.uint8)
    y0, y1, x0, x1 = boxes["left"]
    frame_env = np.interp(np.arange(T) / FPS, t, env)
    video[:, y0:y1, x0:x1] = (200 - 180 * frame_env)[:, None, None, None].astype(np.uint8)  # opens: darker
    assert span_mouth_sync(clip(video, audio), lines, boxes)[0] > 0.9
    assert span_mouth_sync(clip(None, audio), lines, boxes) == [0.0]  # a still mouth


def test_events_on_time_in_video_and_audio():
    script = "0.3-0.9 left: says 'moon'\n1.25-1.55 the yellow lamp lights with a high beep\n1.75 the red circle drops"
    boxes = script_regions(script, "scripted", 64, 64)
    assert boxes == regions("scripted", 64, 64, "left")  # the face's side: the speaker's
    video = np.full((T, 64, 64, 3), 40, np.uint8)
    y0, y1, x0, x1 = boxes["lamp"]
    video[20:25, y0 + 4 : y1 - 4, x0 + 4 : x1 - 4] = (240, 220, 40)  # lit in frames 20-24: 1.25-1.5 s
    audio = voice(0.3, 0.9) + tone(1.25, 1.55, 1320.0, 0.3) + knock(1.75)
    scored = events_on_time(clip(video, audio), cues(script), boxes)
    assert scored == {"lamp (video)": [True], "lamp (audio)": [True], "impact (audio)": [True]}
    late = "0.3-0.9 left: says 'moon'\n1.6-1.9 the yellow lamp lights with a high beep\n1.95 a knock"
    assert events_on_time(clip(video, audio), cues(late), boxes) == {
        "lamp (video)": [False], "lamp (audio)": [False], "impact (audio)": [False]}  # fmt: skip


def test_line_kinds_and_boxes_come_from_the_script_alone():
    lines = cues("a man on the right\n1.5 a knock\n0.2-1.1 left: says 'Apple seven'\n0.4-0.6 a light comes on")
    assert [(c.kind, c.start, c.speaker, c.words) for c in lines] == [
        ("speech", 0.2, "left", ("apple", "seven")), ("lamp", 0.4, None, ()), ("impact", 1.5, None, ())]  # fmt: skip
    assert lines[-1].end == pytest.approx(1.75)  # a point event spans POINT_SPAN
    unspoken = "a man on the right, a red lamp on the left\n0.4-0.6 the red lamp lights"
    assert script_regions(unspoken, "scripted", 64, 64) == regions("scripted", 64, 64, "right")
    assert script_regions(unspoken, "talk", 64, 64) == {}


@pytest.fixture(scope="module")
def reals():
    world = AVWorld(seed=777, families=TIMED_FAMILIES)  # 1, 6: dialogues begun on the right, on the left
    chosen = [world[i] for i in (1, 6, 8, 15)]  # 8, 15: scripted, each with a lamp and a drop
    return [dataclasses.replace(c, meta={}) for c in chosen], [c.meta for c in chosen]


def test_real_clips_follow_their_script_and_not_another(reals):
    clips, metas = reals
    own = summarise([score_script(c, m["script"], m["family"]) for c, m in zip(clips, metas, strict=True)])
    assert own["speech energy in its span"] >= 0.95 and own["speaker's mouth moves (dialogue)"] >= 0.95
    assert own["mouth moves within its own lines"] >= 0.95 and own["mouth_sync in span"] >= 0.7
    assert own["events on time (all)"] == 1.0 and own["per-line WER"] <= 0.25
    swapped = [metas[1], metas[0], metas[3], metas[2]]  # each clip against the other clip of its family's script
    other = summarise([score_script(c, m["script"], m["family"]) for c, m in zip(clips, swapped, strict=True)])
    assert other["speaker's mouth moves (dialogue)"] <= 0.3 and other["mouth moves within its own lines"] <= 0.5
    assert other["lamp lights on time (video)"] == 0.0 and other["per-line WER"] >= 0.8  # (their drops: 50 ms apart)
    assert score_script(clips[1], "1.6-1.95 left: says 'forest'", "dialogue")["speech in span"][0] < 0.1  # ends 1.56


def test_script_rows_columns_and_ratios(reals):
    from avgen.evaluation import script_rows

    clips, metas = reals
    full = [dataclasses.replace(c, meta=m) for c, m in zip(clips, metas, strict=True)]
    still = [dataclasses.replace(c, video=c.video[:1].expand_as(c.video)) for c in clips]  # frozen frames
    res = script_rows(full, {"still": still})
    cols = res["columns"]
    assert list(cols) == ["still", "real", "real vs another clip's script"] and res["clips"] == 4
    assert res["counts"] == {"speech lines": 6, "dialogue lines": 4, "mouths": 6, "lamp lines": 2, "impact lines": 2}
    assert cols["real"]["mouth_sync in span ÷ real"] == 1.0 and cols["still"]["mouth_sync in span"] == 0.0
    assert cols["still"]["speech energy in its span"] == cols["real"]["speech energy in its span"]  # same audio
    assert cols["still"]["speaker's mouth moves (dialogue)"] == 0.5  # no mouth moves: chance
    assert cols["still"]["lamp lights on time (video)"] == 0.0
    assert cols["real vs another clip's script"]["per-line WER ÷ real"] > 3


def test_timed_clips_state_no_attributes_and_do_not_break_the_ae_report():
    from avgen.evaluation import audio_report
    from avgen.metrics.attributes import attributes_from_meta

    clips = [AVWorld(seed=3, families=[f])[0] for f in ("blink", *TIMED_FAMILIES)]
    assert [attributes_from_meta(c.meta) for c in clips[1:]] == [{}, {}]
    report = audio_report(clips, [c.audio for c in clips], 1 / FPS)
    assert report["pitch kept"] == 1.0  # the blink clip's beep; the timed clips are left out of the attributes


def test_dialogue_mouths_own_frames_are_the_frame_differences_inside_the_sides_lines():
    from avgen.script import Script
    from tools.dialogue_mouths import own_frames

    script = Script.parse("a room\n0.25-0.5 left: says 'red'\n1.0 right: a knock")  # a point line spans 0.25 s
    assert np.flatnonzero(own_frames(script, "left", 31, 16.0)).tolist() == [3, 4, 5, 6, 7]  # (k + 1) / 16 in span
    assert np.flatnonzero(own_frames(script, "right", 31, 16.0)).tolist() == [15, 16, 17, 18, 19]
    assert not own_frames(script, "nobody", 31, 16.0).any()
