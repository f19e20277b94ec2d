"""AVGenPipeline's diffusers-shaped surface on a tiny random-weight model: both spellings of each setting give the
same clip, a list of prompts is one batch equal to single calls, generators reproduce, save_pretrained round-trips,
and every model directory carries a README.md whose YAML front matter is a Hugging Face model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from avgen.errors import InputError
from avgen.media import AVClip
from avgen.model_dir import file_hash
from avgen.pipeline import AVGenPipeline
from tests.core_fixtures import tiny_model_dir

ROOT = Path(__file__).resolve().parents[1]
FAST = {"duration": 0.5}  # two video latent frames: each call well under 0.1 s


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("surface") / "m")


@pytest.fixture(scope="module")
def pipe(model_dir):
    return AVGenPipeline.from_pretrained(model_dir)


def same(a: AVClip, b: AVClip) -> bool:
    return torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)


def front_matter(path: Path) -> dict:
    head, sep, _ = path.read_text().removeprefix("---\n").partition("\n---\n")
    assert sep, f"{path} has no YAML front matter"
    return yaml.safe_load(head)


def test_diffusers_names_give_the_clips_of_avgen_names(pipe):
    p = "a small red circle bounces around"
    new = pipe(p, num_inference_steps=2, guidance_scale=1.5, audio_guidance_scale=2.5, sync_guidance_scale=2.0,
               generator=torch.Generator().manual_seed(3), **FAST)  # fmt: skip
    old = pipe(p, steps=2, cfg_video=1.5, cfg_audio=2.5, cfg_sync=2.0, seed=3, **FAST)
    assert isinstance(new, AVClip) and same(new, old)
    assert same(pipe(p, num_inference_steps=2, steps=2, seed=3, guidance_scale=1.5, cfg_video=1.5, cfg_audio=2.5,
                     sync_guidance_scale=2.0, **FAST), old)  # both names, one value: accepted  # fmt: skip
    assert pipe.settings(num_inference_steps=4) == pipe.settings(steps=4)
    assert not same(pipe(p, num_inference_steps=1, seed=3, **FAST), pipe(p, num_inference_steps=2, seed=3, **FAST))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_inference_steps": 4, "steps": 8}, "num_inference_steps=4 and steps=8 set the same thing"),
        ({"guidance_scale": 2.0, "cfg_video": 3.0}, "guidance_scale=2.0 and cfg_video=3.0"),
        ({"audio_guidance_scale": 1.0, "cfg_audio": 2.0}, "audio_guidance_scale=1.0 and cfg_audio=2.0"),
        ({"sync_guidance_scale": 2.0, "cfg_sync": 1.0}, "sync_guidance_scale=2.0 and cfg_sync=1.0"),
        ({"seed": 1, "generator": torch.Generator()}, "seed= and generator= both choose the noise"),
        ({"generator": [torch.Generator()] * 3, "num_clips_per_prompt": 2}, "a list of 2 \\(one per clip\\)"),
        ({"num_clips_per_prompt": 0}, "num_clips_per_prompt=0 must be a whole number >= 1"),
        ({"guidance": 2.0}, "unknown sampler setting 'guidance'"),
        ({"seed": 1.5}, "seed=1.5 must be a whole number"),
        ({"num_inference_steps": 0}, "steps=0 must be a whole number >= 1"),
    ],
)
def test_conflicting_or_bad_arguments_give_one_line(pipe, kwargs, message):
    with pytest.raises(InputError, match=message):
        pipe("x", **kwargs, **FAST)


def test_a_list_of_prompts_is_one_batch_equal_to_single_calls(pipe, monkeypatch):
    prompts = ["a small red circle bounces around", "a woman says 'apple seven'", ""]  # "" mixed in: the null text
    batches = []
    dit = pipe.dit.forward
    monkeypatch.setattr(pipe.dit, "forward", lambda *a, **k: batches.append(a[0].shape[0]) or dit(*a, **k))
    clips = pipe(prompts, seed=5, **FAST)
    assert set(batches) == {2 * len(prompts)}  # one DiT batch per step (conditional + null text branches)
    monkeypatch.undo()
    assert isinstance(clips, list) and [c.caption for c in clips] == prompts
    for j, (clip, p) in enumerate(zip(clips, prompts, strict=True)):
        single = pipe(p, seed=5 + j, **FAST)  # clip j of a seeded call: seed + j
        assert clip.video.shape == single.video.shape and clip.audio.shape == single.audio.shape
        assert (clip.video.int() - single.video.int()).abs().max() <= 1  # uint8 rounding of float noise
        assert torch.allclose(clip.audio, single.audio, atol=1e-5)
        assert clip.meta["seed"] == str(5 + j)
    assert isinstance(pipe(["one prompt"], **FAST), list) and len(pipe(["one prompt"], **FAST)) == 1


def test_num_clips_per_prompt_counts_orders_and_differs(pipe):
    clips = pipe(["a red ball bounces", "a lamp blinks"], num_clips_per_prompt=2, seed=0, **FAST)
    assert [c.caption for c in clips] == ["a red ball bounces"] * 2 + ["a lamp blinks"] * 2  # prompt-major
    assert [c.meta["seed"] for c in clips] == ["0", "1", "2", "3"]
    assert all(not torch.equal(a.video, b.video) for i, a in enumerate(clips) for b in clips[i + 1 :])
    frames = clips[0].video  # given media are shared by the batch and come back untouched
    v2a = pipe("knocks", "v2a", video=frames, num_clips_per_prompt=2, seed=0)
    assert all(torch.equal(c.video, frames) for c in v2a) and not torch.equal(v2a[0].audio, v2a[1].audio)
    with pytest.raises(InputError, match="continues one clip per call"):
        pipe("x", "extend", clip=clips[0], num_clips_per_prompt=2)


def test_generators_reproduce_and_seed_matches_a_fresh_generator(pipe):
    def gens():
        return [torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)]

    a, b = (
        pipe("a blue square", num_clips_per_prompt=2, generator=gens(), **FAST),
        pipe("a blue square", num_clips_per_prompt=2, generator=gens(), **FAST),
    )
    assert all(same(x, y) for x, y in zip(a, b, strict=True)) and "seed" not in a[0].meta
    assert same(a[1], pipe("a blue square", seed=12, **FAST))  # a generator seeded s draws what seed=s draws
    shared = pipe("a blue square", num_clips_per_prompt=2, generator=torch.Generator().manual_seed(11), **FAST)
    assert same(shared[0], a[0]) and not same(shared[1], a[1])  # one generator: drawn in clip order
    g = torch.Generator().manual_seed(11)
    first, second = pipe("a blue square", generator=g, **FAST), pipe("a blue square", generator=g, **FAST)
    assert not same(first, second)  # the generator's state moves on, as in diffusers


def test_save_pretrained_round_trip_gives_the_same_clip(pipe, tmp_path):
    defaults = pipe.sampler
    pipe.sampler = pipe.settings(num_inference_steps=2, cfg_sync=1.5)  # the defaults saved are the current ones
    try:
        out = pipe.save_pretrained(tmp_path / "saved")
        back = AVGenPipeline.from_pretrained(out)
        assert back.sampler == pipe.sampler and back.config["clip"] == pipe.config["clip"]
        assert same(back("a red ball bounces", seed=2, **FAST), pipe("a red ball bounces", seed=2, **FAST))
    finally:
        pipe.sampler = defaults
    assert front_matter(out / "README.md")["avgen"]["sampler"]["steps"] == 2


def test_model_card_front_matter_names_the_model(model_dir):
    meta = front_matter(model_dir / "README.md")
    assert meta["library_name"] == "avgen" and meta["pipeline_tag"] == "text-to-video" and "avgen" in meta["tags"]
    assert f'license = "{meta["license"]}"' in (ROOT / "pyproject.toml").read_text().lower()  # the repo's licence
    a = meta["avgen"]
    assert a["clip"] == {"duration_s": 2.0, "size": [64, 64], "fps": "16", "sample_rate": "16000",
                         "audio_channels": 1}  # fmt: skip
    for name in ("video_ae", "audio_ae"):
        saved = json.loads((model_dir / name / "config.json").read_text())
        assert a[name]["kind"] == saved["class"] and a[name]["sha256"] == saved["weights_sha256"]
    assert a["dit"]["sha256"] == file_hash(model_dir / "dit" / "model.safetensors")


def test_shipped_default_model_card_is_current():
    """assets/default/README.md (python -m avgen.model_card assets/default) names the weights shipped beside it."""
    d = ROOT / "assets" / "default"
    a = front_matter(d / "README.md")["avgen"]
    for name in ("video_ae", "audio_ae"):
        assert a[name]["sha256"] == json.loads((d / name / "config.json").read_text())["weights_sha256"]
    assert a["dit"]["sha256"] == file_hash(d / "dit" / "model.safetensors")
    assert a["training"] == json.loads((d / "dit" / "config.json").read_text())["training"]
    assert "(MODEL_CARD.md)" in (d / "README.md").read_text()  # the hand-written card, linked
