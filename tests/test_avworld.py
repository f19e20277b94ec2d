"""The procedural world: determinism, formats, and ground truth (sound caused by what is seen)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from avgen.data.avworld import COLOURS, SHAPES, WORDS, AVWorld
from avgen.metrics import detect_onsets
from avgen.metrics.sync import mouth_movement


def test_deterministic_from_seed_and_index():
    a, b = AVWorld(seed=3), AVWorld(seed=3)
    for i in (0, 5, 123_456):
        x, y = a[i], b[i]
        assert torch.equal(x.video, y.video) and torch.equal(x.audio, y.audio) and x.caption == y.caption
    assert not torch.equal(a[0].video, a[1].video)
    assert not torch.equal(a[0].audio, AVWorld(seed=4)[0].audio)


def test_default_format_and_ranges():
    clip = AVWorld()[0]
    assert clip.video.shape == (32, 64, 64, 3) and clip.video.dtype == torch.uint8
    assert clip.audio.shape == (1, 32000) and clip.audio.dtype == torch.float32
    peak = clip.audio.abs().max().item()
    assert 0.45 <= peak <= 0.91
    assert clip.fps == 16 and clip.sample_rate == 16000


def test_other_formats_and_stereo_panning():
    world = AVWorld(seed=1, fps=25, size=(48, 80), sample_rate=24000, channels=2, families=["bounce"])
    clip = world[2]
    assert clip.video.shape == (50, 48, 80, 3) and clip.audio.shape == (2, 48000)
    levels = [(world[i].audio[0].abs().sum() / world[i].audio[1].abs().sum()).item() for i in range(8)]
    assert max(levels) / min(levels) > 1.2, "stereo panning should follow the horizontal position"
    with pytest.raises(ValueError, match="families"):
        AVWorld(families=["weather"])


def test_all_families_captions_and_meta():
    world = AVWorld(seed=5)
    seen = {}
    for i in range(40):
        c = world[i]
        seen.setdefault(c.meta["family"], c)
    assert set(seen) == {"bounce", "talk", "blink"}
    b, t, k = seen["bounce"], seen["talk"], seen["blink"]
    attrs = b.meta["attributes"]
    assert attrs["shape"] in SHAPES and attrs["colour"] in COLOURS
    assert attrs["colour"] in b.caption and attrs["shape"] in b.caption and attrs["size"] in b.caption
    assert all(word in WORDS and word in t.caption for word in t.meta["attributes"]["words"])
    assert len(t.meta["mouth"]) == t.video.shape[0]
    assert k.meta["attributes"]["colour"] in k.caption and k.meta["attributes"]["pitch"] in k.caption
    captions = {world[i].caption for i in range(40)}
    assert len(captions) >= 35, "captions should vary"


def test_impact_sounds_start_within_one_frame_of_contacts():
    world = AVWorld(seed=2, families=["bounce"])
    errors = []
    for i in range(12):
        clip = world[i]
        onsets = detect_onsets(clip.audio, clip.sample_rate)
        for e in clip.meta["events"]:
            errors.append(np.min(np.abs(onsets - e)))
    errors = np.array(errors)
    assert len(errors) >= 24
    assert np.all(errors <= 1 / 16), f"worst impact onset error {errors.max() * 1000:.1f} ms"
    assert np.median(errors) < 0.005


def test_contacts_are_where_objects_touch_walls_and_aperiodic():
    world = AVWorld(seed=9, families=["bounce"])
    gaps = []
    for i in range(10):
        clip = world[i]
        events = np.array(clip.meta["events"])
        assert len(events) >= 1
        gaps.extend(np.diff(events))
    gaps = np.array(gaps)
    assert gaps.std() / gaps.mean() > 0.3, "bounce timing should be irregular"


def test_mouth_follows_speech():
    world = AVWorld(seed=4, families=["talk"])
    corrs = []
    for i in range(6):
        clip = world[i]
        mouth = np.array(clip.meta["mouth"])
        measured = mouth_movement(clip.video)  # pixels only
        corrs.append(np.corrcoef(mouth, measured)[0, 1])
        onsets = np.array(clip.meta["events"])
        assert np.all(np.diff(onsets) > 0.05)
    assert min(corrs) > 0.8


def test_no_meta_needed_to_draw_or_play(tmp_path):
    """A clip stripped of its ground truth still writes an mp4 that plays back with both streams, and still draws."""
    from avgen.media import read_clip
    from avgen.viz import clip_figure

    clip = AVWorld(seed=1)[3]
    stripped = dataclasses.replace(clip, meta={})
    stripped.save(tmp_path / "bare.mp4")
    back = read_clip(tmp_path / "bare.mp4")
    assert back.video.shape == clip.video.shape and abs(back.audio.shape[1] - clip.audio.shape[1]) <= 1024
    assert float((back.video.float() - clip.video.float()).abs().mean()) < 3.0  # the same pictures, but for H.264
    assert clip_figure([stripped], tmp_path / "bare.png").stat().st_size > 1000
    assert clip.meta["family"] in ("bounce", "talk", "blink")  # the original keeps its meta (replace copies)
