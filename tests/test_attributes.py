"""Attribute detectors read held-out avworld clips (meta and caption stripped) right, and another clip's caption at
chance; the Fréchet distance on AE features; tools/evaluate.py end to end with a tiny random model."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from avgen.data.avworld import AVWorld
from avgen.data.avworld.render import shape_mask
from avgen.data.avworld.sounds import impact, place
from avgen.data.avworld.vocab import COLOURS, LAMP_SHAPES, PITCHES, SHAPE_SOUNDS
from avgen.media import AVClip
from avgen.metrics.attributes import (
    ATTRIBUTES,
    accuracy,
    attributes_from_meta,
    classify_fill,
    classify_impact,
    detect_beep_pitch,
    estimate_pitch,
    impact_peaks,
    largest_region,
    mismatched_accuracy,
    read_attributes,
)
from avgen.metrics.frechet import fd_scores, frechet_distance
from avgen.metrics.onsets import match_events
from tools.evaluate import NOVEL, shuffled

SR = 16000


def bare(clip: AVClip) -> AVClip:
    return dataclasses.replace(clip, meta={}, caption=None)


@pytest.fixture(scope="module")
def held_out():
    world = AVWorld(seed=777)  # training uses seed 0
    clips = [world[i] for i in range(36)]
    return clips, [attributes_from_meta(c.meta) for c in clips], [read_attributes(bare(c)) for c in clips]


def test_detectors_read_held_out_clips(held_out):
    _, truths, preds = held_out
    stated = {k: sum(k in t for t in truths) for k in ATTRIBUTES}
    assert min(stated.values()) >= 8, stated  # every attribute is tested on several clips
    acc = accuracy(preds, truths)
    assert all(acc[k] >= 0.95 for k in ATTRIBUTES), acc
    assert acc["all"] >= 0.98, acc


def test_other_captions_score_near_chance(held_out):
    """Scored against the next clip's caption (same attribute stated), readings agree only by chance."""
    _, truths, preds = held_out
    chance = mismatched_accuracy(preds, truths)
    # chance: family 1/3, colour 1/6, shape 1/3 (1/2 for lamps), sound 1/3, voice 1/2, pitch 1/3
    limits = {"family": 0.5, "colour": 0.35, "shape": 0.55, "sound": 0.55, "voice": 0.75, "pitch": 0.6, "all": 0.45}
    assert all(chance[k] <= limits[k] for k in limits), chance
    assert accuracy(preds, truths)["all"] - chance["all"] >= 0.5


def test_detectors_ignore_meta_and_caption(held_out):
    clips, _, preds = held_out
    other = dataclasses.replace(clips[0], caption=clips[1].caption, meta=clips[1].meta)
    assert read_attributes(other) == preds[0]


def test_blank_clip_reads_as_nothing():
    clip = AVClip(torch.zeros(32, 64, 64, 3, dtype=torch.uint8), torch.zeros(1, 2 * SR), 16.0, SR)
    got = read_attributes(clip)
    assert got == {"family": None, "colour": (), "shape": (), "sound": (), "voice": None, "pitch": None}


@pytest.mark.parametrize("f0", [100.0, 125.0, 200.0, 240.0])
def test_pitch_of_a_pulse_train(f0):
    t = np.arange(SR) / SR
    pulses = (np.diff(np.floor(t * f0), prepend=0) > 0).astype(np.float32)
    voiced = np.convolve(pulses, np.exp(-np.arange(200) / 30.0) * np.sin(np.arange(200) * 0.3))[:SR]
    assert abs(estimate_pitch(voiced[None], SR) - f0) / f0 < 0.03


def test_beep_pitch_of_tones():
    t = np.arange(2 * SR) / SR
    for name, f in PITCHES.items():
        tone = np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * 2 * t) > 0)  # on and off like a lamp
        assert detect_beep_pitch(tone[None], SR) == name


@pytest.mark.parametrize("shape", list(SHAPE_SOUNDS))
@pytest.mark.parametrize("size", [1.0, 1.6])
def test_impact_class_of_single_impacts(shape, size):
    rng = np.random.default_rng(0)
    track = 0.002 * rng.standard_normal(SR)
    place(track, impact(shape, size, 0.8, SR, rng), 4000)
    peaks = impact_peaks(track[None], SR)
    assert len(peaks) >= 1 and all(classify_impact(p) == SHAPE_SOUNDS[shape] for p in peaks), peaks


@pytest.mark.parametrize("shape", ["circle", "square", "triangle"])
@pytest.mark.parametrize("radius", [5.76, 9.0, 14.0])
def test_shape_from_fill_ratio(shape, radius):
    mask = shape_mask(shape, np.array([[31.3, 30.6]]), radius, 64, 64)[0]
    assert classify_fill(largest_region(mask >= 0.5)["fill"]) == shape


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6))
    shift = rng.standard_normal(6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-6)
    # b = 2a: means 2 mu, covariance 4 S, so FD = |mu|^2 + tr(S + 4S - 2 * 2S) = |mu|^2 + tr(S)
    expected = float((a.mean(0) ** 2).sum() + np.trace(np.cov(a, rowvar=False)))
    assert frechet_distance(a, 2 * a) == pytest.approx(expected, rel=1e-6)
    few = rng.standard_normal((5, 40))  # fewer samples than features: singular covariances
    assert 0.0 <= frechet_distance(few, rng.standard_normal((5, 40))) < np.inf
    with pytest.raises(ValueError):
        frechet_distance(few[:1], few)


def test_fd_on_autoencoder_features_separates_real_from_corrupted(held_out):
    from avgen.autoencoders import load

    clips = held_out[0]
    video_ae, audio_ae = load("assets/default/video_ae"), load("assets/default/audio_ae")
    g = torch.Generator().manual_seed(0)
    corrupt = [dataclasses.replace(c, video=255 - c.video, audio=0.3 * torch.randn(c.audio.shape, generator=g))
               for c in clips[12:24]]  # fmt: skip
    fd = fd_scores({"real": clips[12:24], "corrupt": corrupt, "shuffled": shuffled(clips[12:24], ["a"] * 12)},
                   clips[:12], video_ae, audio_ae)  # fmt: skip
    for k in fd["real"]:
        assert fd["corrupt"][k] > 2 * fd["real"][k], (k, fd)
    assert fd["shuffled"]["FD video (AE features)"] == pytest.approx(fd["real"]["FD video (AE features)"])


def test_onset_match_and_shuffle():
    tol = 0.0625
    third = pytest.approx(2 / 3)
    assert match_events(np.array([0.1, 0.5, 0.9]), [0.12, 0.95, 1.5], tol) == (third, third)
    assert np.isnan(match_events(np.array([]), [0.3], tol)[0]) and match_events(np.array([]), [0.3], tol)[1] == 0.0
    clips = [AVClip(torch.zeros(2, 8, 8, 3, dtype=torch.uint8), torch.full((1, 4), float(i)), 16.0, SR)
             for i in range(5)]  # fmt: skip
    out = shuffled(clips, ["a", "b", "a", "b", "a"])
    assert [float(c.audio[0, 0]) for c in out] == [2.0, 3.0, 4.0, 1.0, 0.0]


def test_novel_captions_state_combinations_the_world_never_makes():
    for caption, truth, _ in NOVEL:
        assert all(w in caption for v in truth.values() for w in (v if isinstance(v, tuple) else (v,))
                   if w in COLOURS or w in SHAPE_SOUNDS), caption  # fmt: skip
        if truth["family"] == "bounce" and len(truth["colour"]) == 1:
            assert truth["sound"] != (SHAPE_SOUNDS[truth["shape"][0]],), caption  # a shape with another's sound
        if truth["family"] == "blink":
            assert truth["shape"][0] not in LAMP_SHAPES, caption


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.core_fixtures import tiny_model_dir

    return tiny_model_dir(tmp_path_factory.mktemp("model") / "m", perturb=False, half=False, steps=1, cfg_video=1.0,
                          cfg_audio=1.0)  # fmt: skip


def test_evaluate_end_to_end(tiny_model, tmp_path):
    from tools.evaluate import main

    args = ["--model", str(tiny_model), "--count", "4", "--novel", "2", "--task-count", "2", "--steps", "1",
            "--scripts", "2", "--latents", "", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    for name in ("eval.md", "eval.json", "bars.png", "samples.png"):
        assert (tmp_path / name).stat().st_size > 0
    res = json.loads((tmp_path / "eval.json").read_text())
    assert res["t2av"]["attributes"]["real"]["accuracy"]["all"] == 1.0
    assert res["t2av"]["sync"]["real"]["AV-Align"] > res["t2av"]["sync"]["audio-shuffled"]["AV-Align"]
    assert res["v2a"]["real"]["contacts that got an onset (share)"] >= 0.9
    assert "| attribute accuracy |" in (tmp_path / "eval.md").read_text()
    assert res["config"]["held_out_seed"] == 777 and "scenes (seed 777)" in (tmp_path / "eval.md").read_text()
    scripts = res["scripts"]  # one dialogue and one scripted clip: the model given their scripts, untimed, real
    assert scripts["clips"] == 2 and scripts["families"] == {"dialogue": 1, "scripted": 1}
    assert list(scripts["columns"]) == ["scripted", "untimed prompt", "real", "real vs another clip's script"]
    real = scripts["columns"]["real"]
    assert real["speech energy in its span"] >= 0.9 and real["speaker's mouth moves (dialogue)"] >= 0.9
    assert real["events on time (all)"] == 1.0 and "scripts" in res["timing"]
    assert "## Scripts" in (tmp_path / "eval.md").read_text()


def test_a_selection_evaluates_other_scenes():
    from types import SimpleNamespace

    from tools.evaluate import held_out

    pipe = SimpleNamespace(fps=16, size=(64, 64), sample_rate=16000)
    pick, report = (held_out(pipe, SimpleNamespace(world_seed=s), ["bounce"]) for s in (778, 777))
    assert [pick[i].caption for i in range(3)] == [AVWorld(778, families=["bounce"])[i].caption for i in range(3)]
    assert [pick[i].caption for i in range(3)] != [report[i].caption for i in range(3)]
