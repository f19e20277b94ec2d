"""The avworld families with timelines (dialogue, scripted): meta["script"] is true to the pixels and the samples."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from avgen.data.avworld import FAMILIES, TIMED_FAMILIES, AVWorld
from avgen.data.avworld.timelines import regions
from avgen.metrics import detect_onsets


def _digest(clip) -> str:
    h = hashlib.sha256(clip.video.numpy().tobytes())
    h.update(np.round(clip.audio.numpy().astype(np.float64) * 2**15).astype(np.int32).tobytes())
    h.update(clip.caption.encode())
    return h.hexdigest()[:16]


def test_default_clips_are_unchanged():
    """The timed families are drawn only when named: the default world's clips are those of before (main)."""
    assert not set(TIMED_FAMILIES) & set(FAMILIES)
    world = AVWorld(seed=0)
    golden = {0: ("talk", "5fc6edd662ace28c"), 2: ("bounce", "f7de6981109abc5c"), 5: ("blink", "9f6d4283c2b0e123")}
    assert {i: (world[i].meta["family"], _digest(world[i])) for i in golden} == golden


@pytest.fixture(scope="module")
def dialogues():
    return [AVWorld(seed=5, families=["dialogue"])[i] for i in range(3)]


def _spans(clip, speaker=None) -> list[tuple[float, float]]:
    return [(x["start"], x["end"]) for x in clip.meta["script"][1:] if speaker is None or x["speaker"] == speaker]


def _overlaps(k: int, fps: float, spans, pad: float = 0.006) -> bool:
    """Whether frame k's span [k - 0.5, k + 0.5) / fps meets a script span (widened by its 0.01 s rounding)."""
    return any((k - 0.5) / fps < b + pad and (k + 0.5) / fps > a - pad for a, b in spans)


def test_dialogue_script_alternates_within_the_clip(dialogues):
    for clip in dialogues:
        script, lines = clip.meta["script"], clip.meta["lines"]
        assert script[0]["start"] is None and "on the left" in script[0]["text"] and len(lines) == len(script)
        timed = script[1:]
        assert len(timed) >= 2
        assert [x["speaker"] for x in timed[1:]] == [
            {"left": "right", "right": "left"}[x["speaker"]] for x in timed[:-1]
        ]
        for x, truth in zip(timed, lines[1:], strict=True):
            assert 0 < x["start"] < x["end"] <= 2.0 and truth["region"] == x["speaker"]
            assert x["text"] == f"says '{' '.join(truth['words'])}'"
            assert x["start"] - 0.01 <= truth["word_times"][0][0] <= truth["word_times"][-1][1] <= x["end"] + 0.01
        assert all(
            b["start"] - a["end"] >= 0.09 for a, b in zip(timed[:-1], timed[1:], strict=True)
        )  # a pause between lines
        assert clip.meta["regions"] == regions("dialogue", 64, 64)  # fixed: readable without meta


def test_each_mouth_moves_only_in_its_own_lines(dialogues):
    for clip in dialogues:
        video = clip.video.float().mean(-1)  # (t, h, w)
        for side in ("left", "right"):
            opening = np.array(clip.meta["mouths"][side])
            own = np.array([_overlaps(k, clip.fps, _spans(clip, side)) for k in range(len(opening))])
            assert np.all(opening[~own] == 0) and opening[own].max() > 0.2
            y0, y1, x0, x1 = clip.meta["regions"][side]
            mouth = video[:, y0:y1, x0:x1]
            closed = mouth[torch.from_numpy(~own)]
            assert torch.equal(closed, closed[:1].expand_as(closed))  # a closed mouth: the very same pixels
            moving = (mouth[torch.from_numpy(own)] - closed[0]).abs().amax(dim=(1, 2))
            assert moving.max() > 20  # the open mouth shows in its region


def test_speech_energy_lies_in_its_script_span(dialogues):
    for clip in dialogues:
        x = clip.audio[0].double().numpy()
        sr, spans = clip.sample_rate, _spans(clip)
        cuts = [0.0, *[(a[1] + b[0]) / 2 for a, b in zip(spans[:-1], spans[1:], strict=True)], len(x) / sr]
        for (a, b), lo, hi in zip(spans, cuts[:-1], cuts[1:], strict=True):
            near = (x[round(lo * sr) : round(hi * sr)] ** 2).sum()
            assert (x[round(a * sr) : round(b * sr)] ** 2).sum() >= 0.95 * near


def test_scripted_events_match_pixels_and_samples():
    world = AVWorld(seed=2, families=["scripted"])
    seen = set()
    for i in range(8):
        clip = world[i]
        timed, lines = clip.meta["script"][1:], clip.meta["lines"][1:]
        kinds = [truth["kind"] for truth in lines]
        assert (
            kinds.count("speech") == 1
            and len(kinds) >= 2
            and [x["start"] for x in timed] == sorted(x["start"] for x in timed)
        )
        speech = timed[kinds.index("speech")]
        for x, truth in zip(timed, lines, strict=True):
            seen.add(truth["kind"])
            assert 0 < x["start"] <= 2.0
            if truth["kind"] == "lamp":
                y0, y1, x0, x1 = clip.meta["regions"]["lamp"]
                glow = clip.video[:, (y0 + y1) // 2, (x0 + x1) // 2].float().amax(-1)  # the lamp's centre pixel
                lit = (np.arange(len(glow)) / clip.fps >= x["start"]) & (np.arange(len(glow)) / clip.fps < x["end"])
                assert lit.any() and glow[lit].min() > glow[~lit].max() + 40
                assert "lamp" in x["text"] and x["speaker"] is None
            if truth["kind"] == "impact":
                assert x["end"] is None and x["start"] > speech["end"]  # the knock comes after the line
                onsets = detect_onsets(clip.audio, clip.sample_rate)
                assert np.min(np.abs(onsets - x["start"])) <= 1 / clip.fps
                (_, mask), *_ = [m for m in world.object_masks(i) if m[0]["kind"] == "object"]
                rows = (mask * np.arange(mask.shape[1])[None, :, None]).sum((1, 2)) / mask.sum((1, 2))
                k = int(np.ceil(x["start"] * clip.fps))  # first frame at or after the contact: landed, still
                assert np.allclose(rows[k:], rows[-1]) and rows[k - 2] < rows[-1] - 2  # falling 1/16 s before
        assert clip.meta["regions"] == regions("scripted", 64, 64, speech["speaker"])
    assert seen == {"speech", "lamp", "impact"}


def test_caption_tells_every_line_in_order(dialogues):
    clips = [*dialogues, *(AVWorld(seed=2, families=["scripted"])[i] for i in range(3))]
    for clip in clips:
        pos = 0
        for x in clip.meta["script"][1:]:
            key = x["text"].split("'")[1] if x["speaker"] else x["text"].split()[1]  # the words, or the colour
            found = clip.caption.find(key, pos)
            assert found >= pos, (key, clip.caption)
            pos = found + len(key)


def test_four_second_clips_and_determinism():
    for family in ("dialogue", "scripted"):
        clip, twin = (
            AVWorld(seed=8, duration=4.0, families=[family])[0],
            AVWorld(seed=8, duration=4.0, families=[family])[0],
        )
        assert clip.video.shape[0] == 64 and clip.audio.shape[-1] == 64000 and clip.meta["family"] == family
        assert len(clip.meta["script"]) >= 3
        assert all(0 < x["start"] <= 4.0 and (x["end"] or 0) <= 4.0 for x in clip.meta["script"][1:])
        assert torch.equal(clip.video, twin.video) and torch.equal(clip.audio, twin.audio)
        assert clip.caption == twin.caption and clip.meta == twin.meta
        json.dumps(clip.meta)  # latent shards store it as JSON


def test_cached_latents_keep_the_script(tmp_path):
    """tools/cache_latents.py --families draws the timed families, and each clip's script reaches its shard."""
    from avgen.autoencoders import SeanetAudioAE, VideoVAE
    from avgen.data.latents import LatentShards
    from tools.cache_latents import main as cache_latents

    torch.manual_seed(0)
    VideoVAE(latent_channels=4, width=8, mults=[1, 1, 1], blocks=1, latent_blocks=1).save(tmp_path / "video")
    SeanetAudioAE(latent_channels=4, n_filters=4).save(tmp_path / "audio")
    args = ["--video-ae", str(tmp_path / "video"), "--audio-ae", str(tmp_path / "audio"),
            "--out", str(tmp_path / "lat"), "--count", "2", "--families", "dialogue,scripted"]  # fmt: skip
    assert cache_latents(args) == 0
    shards = LatentShards(tmp_path / "lat")
    world = AVWorld(families=["dialogue", "scripted"])
    for i in range(2):
        assert shards[i]["meta"]["script"] == world[i].meta["script"] and shards[i]["caption"] == world[i].caption
