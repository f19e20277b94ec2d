"""Generation that uses its inputs: through AVGenPipeline, the given tokens are the encoded input, the generated part
changes when the input does, the extend prefix is exactly the context, and each guidance scale moves only its own
modality. Tiny random-weight model, fixed seeds."""

from __future__ import annotations

import pytest
import torch

from avgen.data.batch import video_to_model
from avgen.pipeline import AVGenPipeline
from tests.core_fixtures import tiny_model_dir


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    pipe = AVGenPipeline.from_pretrained(tiny_model_dir(tmp_path_factory.mktemp("cond") / "m"))
    with torch.no_grad():  # per-channel latent stats of the test inputs, as cache_latents gives a trained model
        za = torch.cat([pipe.audio_ae.encode(_speech(k)[None]) for k in (1, 2)])
        zv = torch.cat([pipe.video_ae.encode(video_to_model(_frames(k)[None])) for k in (1, 2)])
    for ae, z in ((pipe.audio_ae, za), (pipe.video_ae, zv)):
        dims = [0, *range(2, z.ndim)]
        ae.set_latent_stats(z.mean(dims), z.std(dims))
    return pipe


class Spy:
    """Records what the pipeline encodes and what the sampler returns, calling through to the real methods."""

    def __init__(self, pipe, monkeypatch):
        self.encoded, self.sampled = [], []
        encode, sample = pipe.encode, pipe.sample_tokens

        def spy_encode(*a, **k):
            self.encoded.append(encode(*a, **k))
            return self.encoded[-1]

        def spy_sample(*a, **k):
            self.sampled.append(sample(*a, **k))
            return self.sampled[-1]

        monkeypatch.setattr(pipe, "encode", spy_encode)
        monkeypatch.setattr(pipe, "sample_tokens", spy_sample)

    def last(self):
        return self.encoded[-1], self.sampled[-1]


def _differ(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Clearly different: a model that ignored its input would give these bit for bit (same seed, same noise); the
    random tiny DiT's dependence on it is small but far above float noise."""
    return float((a - b).abs().max()) > 1e-5


def _speech(kind: int) -> torch.Tensor:
    """Two very different inputs (the tiny random AE must tell them apart): near-silence, or loud noise bursts."""
    g = torch.Generator().manual_seed(kind)
    if kind == 1:
        return 0.01 * torch.sin(torch.arange(32000) / 16000 * 2 * torch.pi * 220)[None]
    return 0.8 * torch.randn(1, 32000, generator=g).clamp(-1, 1) * (torch.arange(32000) % 8000 < 2000)


def _frames(kind: int) -> torch.Tensor:
    if kind == 1:
        return torch.full((32, 64, 64, 3), 20, dtype=torch.uint8)
    return torch.randint(0, 256, (32, 64, 64, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(kind))


@pytest.mark.parametrize("task", ["a2v", "v2a"])
def test_given_modality_is_held_and_the_generated_one_follows_it(pipe, monkeypatch, task):
    """a2v: the sampled audio tokens are exactly the encoded speech, and other speech (same seed) gives other video;
    v2a the other way round."""
    spy = Spy(pipe, monkeypatch)
    given_i = 1 if task == "a2v" else 0  # index of the given modality in (video, audio)
    made = []
    for kind in (1, 2):
        inputs = {"audio": _speech(kind)} if task == "a2v" else {"video": _frames(kind)}
        clip = pipe("", task, seed=0, **inputs)
        encoded, sampled = spy.last()
        assert torch.equal(sampled[given_i], encoded[given_i])
        made.append((sampled[1 - given_i], clip.video if task == "a2v" else clip.audio))
    assert _differ(made[0][0], made[1][0])  # the generated tokens follow the input
    assert not torch.equal(made[0][1], made[1][1])  # and so does the decoded output


def test_extend_holds_exactly_the_context_prefix_and_continues_from_it(pipe, monkeypatch):
    spy = Spy(pipe, monkeypatch)
    layout = pipe.layout(pipe.duration)
    context = pipe.valid_duration(pipe.duration / 2)
    mv, ma = layout.token_mask_before(context)
    mv, ma = mv.flatten(), ma.flatten()
    share = context / pipe.duration  # the context's share of each modality's tokens, counted independently
    assert mv.sum() == round(share * layout.lv) and ma.sum() == round(share * layout.la)
    assert layout.video_times[mv].max() < layout.video_times[~mv].min()  # a prefix in time
    assert layout.audio_times[ma].max() < layout.audio_times[~ma].min()
    generated = []
    for seed in (1, 2):
        clip = pipe("", "extend", clip=pipe("", seed=seed), seconds=0.5, seed=0)
        (cv, ca), (xv, xa) = spy.last()
        assert torch.equal(xv[:, mv], cv[:, mv]) and torch.equal(xa[:, ma], ca[:, ma])  # prefix held exactly
        assert not torch.allclose(xv[:, ~mv], cv[:, ~mv], atol=1e-3)  # the rest is generated, not copied
        generated.append((xv[:, ~mv], xa[:, ~ma], clip))
    assert _differ(generated[0][0], generated[1][0])  # other context, other continuation
    assert _differ(generated[0][1], generated[1][1])


def test_each_guidance_scale_moves_only_its_own_modality(pipe):
    """One Euler step from noise: x0 = noise - v(noise). Video tokens depend on cfg_video only, audio on cfg_audio."""
    layout = pipe.layout(pipe.duration)

    def sample(cfg_video, cfg_audio):
        s = pipe.settings(steps=1, cfg_video=cfg_video, cfg_audio=cfg_audio)
        return pipe.sample_tokens(["a red ball bounces with knocks"], layout, 0, None, s)

    base = sample(2.0, 2.0)
    video_up, audio_up = sample(5.0, 2.0), sample(2.0, 5.0)
    assert torch.equal(video_up[1], base[1]) and not torch.allclose(video_up[0], base[0], atol=1e-4)
    assert torch.equal(audio_up[0], base[0]) and not torch.allclose(audio_up[1], base[1], atol=1e-4)
