"""Token layout: exact inverses, times on one clock, the whole-number rule."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from avgen.autoencoders.base import AEGeometry
from avgen.tokens import AVTokenLayout

TINY_VIDEO = AEGeometry(Fraction(16), 4, 8, 16)
TINY_AUDIO = AEGeometry(Fraction(16000), 400, 1, 32)


def test_interleave_and_patchify_are_exact_inverses_over_random_shapes():
    rng = np.random.default_rng(0)
    for _ in range(25):
        fps = int(rng.choice([8, 16, 24, 32]))
        pt = int(rng.choice([1, 2]))
        k = int(rng.choice([1, 2, 5]))
        video = AEGeometry(Fraction(fps), 4, 8, int(rng.integers(1, 9)))
        audio_rate = Fraction(fps, 4) / pt * k * int(rng.integers(1, 4))  # whole tokens per window by construction
        audio = AEGeometry(Fraction(16000), 1, 1, int(rng.integers(1, 9)))
        audio = AEGeometry(audio_rate * 10, 10, 1, audio.latent_channels)
        seconds = Fraction(4 * pt * int(rng.integers(1, 4)), fps)
        size = (8 * 2 * int(rng.integers(1, 4)), 8 * 2 * int(rng.integers(1, 4)))
        layout = AVTokenLayout.from_geometry(video, audio, seconds, size, video_patch=(pt, 2, 2), audio_patch=k)
        b = 2
        zv = torch.randn(b, *layout.video_latent)
        za = torch.randn(b, *layout.audio_latent)
        xv, xa = layout.patchify(zv, za)
        assert xv.shape == (b, layout.lv, layout.pv) and xa.shape == (b, layout.la, layout.pa)
        back_v, back_a = layout.unpatchify(xv, xa)
        assert torch.equal(back_v, zv) and torch.equal(back_a, za)
        seq = layout.interleave(xv[..., :1], xa[..., :1])
        sv, sa = layout.split(seq)
        assert torch.equal(sv, xv[..., :1]) and torch.equal(sa, xa[..., :1])
        times = layout.times
        assert torch.all(times[1:] >= times[:-1] - float(pt / video.latent_rate))  # ordered by window
        assert sorted(layout.perm.tolist()) == list(range(layout.l))


def test_interleave_order_for_tiny_aes():
    layout = AVTokenLayout.from_geometry(TINY_VIDEO, TINY_AUDIO, 2.0, (64, 64), audio_patch=2)
    assert (layout.lv, layout.la, layout.per_window, layout.l) == (128, 40, 5, 168)
    # each window: 16 video tokens then 5 audio tokens
    assert layout.is_audio[:21].tolist() == [False] * 16 + [True] * 5
    assert layout.times[0] == pytest.approx(0.125) and layout.times[16] == pytest.approx(0.025)


@pytest.mark.parametrize(
    "video,audio,fps,k,size",
    [
        (TINY_VIDEO, TINY_AUDIO, 16, 2, (64, 64)),
        (AEGeometry(Fraction(25), 4, 8, 16), AEGeometry(Fraction(24000), 320, 1, 128), 25, 3, (64, 64)),
    ],
)
def test_click_and_flash_land_on_the_same_time_coordinate(video, audio, fps, k, size):
    """An event at t seconds: the video token whose span holds the flash frame and the audio token whose span holds
    the click sample have time coordinates within one token span of each other, and their windows coincide."""
    seconds = 2.0 if fps == 16 else 1.92  # whole latent frames: 48 frames at 25 fps
    layout = AVTokenLayout.from_geometry(video, audio, seconds, size, audio_patch=k)
    if fps == 25:
        assert layout.per_window == 4  # 6.25 Hz video latents, 75 Hz / 3 = 25 Hz audio tokens
    pos = layout.positions
    for t in (0.3, 0.95, 1.61, 1.9):
        frame = int(t * fps)  # flash frame index
        v_token = (frame // video.time_stride) * layout.grid[1] * layout.grid[2]
        sample = int(t * float(audio.input_rate))
        a_token = sample // audio.time_stride // k
        v_seq = int((layout.perm == v_token).nonzero())
        a_seq = int((layout.perm == layout.lv + a_token).nonzero())
        tv, ta = float(pos[v_seq, 0]) / layout.ref_rate, float(pos[a_seq, 0]) / layout.ref_rate
        v_span = video.time_stride / float(video.input_rate)
        assert abs(tv - ta) <= v_span / 2 + 1e-6
        assert abs(ta - t) <= k / float(audio.latent_rate)
        assert a_seq > v_seq and a_seq - v_seq <= layout.grid[1] * layout.grid[2] + layout.per_window
        assert pos[a_seq, 1] == -1 and pos[a_seq, 2] == -1


def test_rates_that_cannot_interleave_raise_with_advice():
    audio = AEGeometry(Fraction(16000), 400, 1, 32)
    with pytest.raises(ValueError, match="whole number.*audio_patch values that work"):
        AVTokenLayout.from_geometry(TINY_VIDEO, audio, 2.0, (64, 64), audio_patch=3)
    with pytest.raises(ValueError, match="not a whole number of input steps"):
        AVTokenLayout.from_geometry(TINY_VIDEO, audio, 2.01, (64, 64))
    with pytest.raises(ValueError, match="lengths must be"):
        AVTokenLayout.from_geometry(TINY_VIDEO, audio, 2.125, (64, 64))
    with pytest.raises(ValueError, match="multiples of 8"):
        AVTokenLayout.from_geometry(TINY_VIDEO, audio, 2.0, (60, 64))


def test_clip_format_is_derived_from_the_autoencoders_and_stored_once(tmp_path):
    """Rates and channels come from the AEs' geometry; a model directory stores only the free choices, and reading
    them back gives the same format and layout. No avgen-train config restates what the AEs declare."""
    import yaml

    from avgen.autoencoders import SeanetAudioAE, VideoVAE
    from avgen.cli.common import CONFIG_DIR
    from avgen.tokens import ClipFormat

    video, audio = VideoVAE(latent_channels=4, width=8, fps=20), SeanetAudioAE(latent_channels=4, channels=2)
    assert video.geometry.channels == 3 and audio.geometry.channels == 2
    fmt = ClipFormat.derive(video, audio, {"duration": 2.4, "size": [64, 64]},
                            {"video_patch": [1, 2, 2], "audio_patch": 2, "ref_rate": 100.0})  # fmt: skip
    assert (fmt.fps, fmt.sample_rate, fmt.channels) == (20, 16000, 2)
    stored = fmt.to_config()
    assert set(stored["clip"]) == {"duration", "size"}  # the rates belong to the autoencoders
    again = ClipFormat.derive(video, audio, stored["clip"], stored["tokens"])
    assert again == fmt and again.layout(video, audio).key == fmt.layout(video, audio).key
    train = yaml.safe_load((Path(CONFIG_DIR) / "train.yaml").read_text())
    experiments = [yaml.safe_load(p.read_text()) for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")]
    for cfg in [train, *experiments]:
        assert not {"fps", "sample_rate", "channels"} & set(cfg.get("clip") or {}), cfg.get("clip")


# --- causal time, the relaxed rule, clip lengths ---------------------------------------------------------------------
WAN_LIKE = AEGeometry(Fraction(16), 4, 8, 16, causal=True, channels=3)  # 1 + 4k frames at 16 fps
DAC16_LIKE = AEGeometry(Fraction(16000), 320, 1, 8)  # 50 Hz latents
OOBLECK_LIKE = AEGeometry(Fraction(44100), 2048, 1, 8, channels=2)  # 44100/2048 ~ 21.53 Hz latents
VIDEO25 = AEGeometry(Fraction(25), 4, 8, 16)  # uniform, 6.25 Hz latents


def window_edges(video: AEGeometry, windows: int, pt: int) -> list[Fraction]:
    """Edges in seconds of the video windows, from the frames each latent frame covers (restated independently)."""
    fps, s = video.input_rate, video.time_stride
    if video.causal:  # latent 0: frame 0; latent j: frames 1 + (j - 1) * s ... j * s
        ends = [Fraction(1) / fps] + [(1 + j * s) / fps for j in range(1, windows * pt)]
    else:
        ends = [(j + 1) * s / fps for j in range(windows * pt)]
    return [Fraction(0)] + ends[pt - 1 :: pt]


def latent_of_frame(video: AEGeometry, frame: int) -> int:
    if video.causal:
        return 0 if frame == 0 else 1 + (frame - 1) // video.time_stride
    return frame // video.time_stride


def seq_index(layout: AVTokenLayout, i: int) -> int:
    """Sequence position of token i of [video, audio]."""
    return int(layout.inverse[i])


@pytest.mark.parametrize(
    "video,audio,seconds,k,pt,relaxed",
    [
        (WAN_LIKE, DAC16_LIKE, 2.0625, 2, 1, True),  # 33 frames; 25 Hz audio tokens vs 4 Hz windows, first 1/16 s
        (WAN_LIKE, DAC16_LIKE, 2.3125, 1, 2, False),  # causal groups by time without the flag; pt = 2
        (VIDEO25, OOBLECK_LIKE, 1.92, 1, 1, True),  # fractional rate, uniform video
    ],
)
def test_click_and_flash_land_on_the_same_time_coordinate_causal_and_fractional(video, audio, seconds, k, pt,
                                                                                 relaxed):  # fmt: skip
    """A flash at t lands in the video window whose true span holds its frame, at that span's centre; the click's
    audio token is centred within half a token of t and follows, in the sequence, the window its centre falls in."""
    layout = AVTokenLayout.from_geometry(video, audio, seconds, (64, 64), video_patch=(pt, 2, 2), audio_patch=k,
                                         relaxed=relaxed)  # fmt: skip
    assert layout.by_time and layout.per_window == 0
    hw, windows = layout.grid[1] * layout.grid[2], layout.grid[0]
    edges = window_edges(video, windows, pt)
    pos = layout.positions.double()
    a_span = k / float(audio.latent_rate)
    for t in (0.01, 0.3, 0.95, 1.61, 1.9):
        w = latent_of_frame(video, int(t * float(video.input_rate))) // pt
        v_seq = seq_index(layout, w * hw)
        a_token = int(t * float(audio.input_rate)) // (audio.time_stride * k)
        a_seq = seq_index(layout, layout.lv + a_token)
        tv, ta = float(pos[v_seq, 0]) / layout.ref_rate, float(pos[a_seq, 0]) / layout.ref_rate
        v_span = float(edges[w + 1] - edges[w])
        assert tv == pytest.approx(float(edges[w] + edges[w + 1]) / 2, abs=1e-6)  # the centre of the true span
        assert abs(tv - t) <= v_span / 2 + 1e-6 and abs(ta - t) <= a_span / 2 + 1e-6
        assert abs(tv - ta) <= (v_span + a_span) / 2 + 1e-6  # one clock for both
        wa = max(i for i in range(windows) if float(edges[i]) <= ta + 1e-12)  # the window the click's centre is in
        if float(edges[w]) + a_span <= t < float(edges[w + 1]) - a_span:
            assert wa == w  # well inside a window: the same window
        assert a_seq > seq_index(layout, (wa + 1) * hw - 1)  # after that window's video tokens
        assert wa == windows - 1 or a_seq < seq_index(layout, (wa + 1) * hw)  # before the next window's
        assert pos[a_seq, 1] == -1 and pos[a_seq, 2] == -1
    if video.causal:  # the first window is one frame (pt = 1) or 1 + (pt - 1) * stride frames long
        assert float(layout.video_times[0]) == pytest.approx(float(edges[1]) / 2)
        assert layout.finest_spacing == pytest.approx(min(float(edges[1]), a_span) * layout.ref_rate)
    assert layout.span == pytest.approx(seconds * layout.ref_rate)


@pytest.mark.parametrize("video,audio,relaxed", [(WAN_LIKE, DAC16_LIKE, False), (VIDEO25, OOBLECK_LIKE, True),
                                                 (WAN_LIKE, OOBLECK_LIKE, True)])  # fmt: skip
def test_time_grouped_layouts_interleave_exactly_with_every_audio_token_in_its_window(video, audio, relaxed):
    rng = np.random.default_rng(0)
    for _ in range(6):
        pt, k = int(rng.choice([1, 2])), int(rng.choice([1, 2, 3]))
        windows = int(rng.integers(1, 7))
        frames = video.input_length(windows * pt)
        seconds = Fraction(frames) / video.input_rate
        layout = AVTokenLayout.from_geometry(video, audio, seconds, (32, 48), video_patch=(pt, 2, 2), audio_patch=k,
                                             relaxed=relaxed)  # fmt: skip
        edges = window_edges(video, windows, pt)
        centres = [(i + Fraction(1, 2)) * k / audio.latent_rate for i in range(layout.la)]
        assert layout.la == int(edges[-1] * audio.latent_rate / k)  # whole tokens inside the video's span
        want = [max(w for w in range(windows) if edges[w] <= c) for c in centres]
        assert layout.audio_windows.tolist() == want and all(c < edges[-1] for c in centres)
        order = torch.cat([torch.arange(layout.lv) // (layout.grid[1] * layout.grid[2]), layout.audio_windows])
        seq_window, seq_audio = order[layout.perm], layout.is_audio.long()
        assert torch.all(seq_window[1:] * 2 + seq_audio[1:] >= seq_window[:-1] * 2 + seq_audio[:-1])  # sorted
        b = 2
        xv, xa = torch.randn(b, layout.lv, 3), torch.randn(b, layout.la, 3)
        sv, sa = layout.split(layout.interleave(xv, xa))
        assert torch.equal(sv, xv) and torch.equal(sa, xa)
        assert sorted(layout.perm.tolist()) == list(range(layout.l))
        zv, za = torch.randn(b, *layout.video_latent), torch.randn(b, *layout.audio_latent)
        back = layout.unpatchify(*layout.patchify(zv, za))
        assert torch.equal(back[0], zv) and torch.equal(back[1], za)
        mv, ma = layout.token_mask_before(float(edges[1]))  # the first window, and the audio that ends in it
        assert mv.sum() == layout.grid[1] * layout.grid[2]
        assert ma.sum() == int(edges[1] * audio.latent_rate / k)


def old_rule(layout: AVTokenLayout) -> dict[str, torch.Tensor]:
    """The whole-number rule as it was written before causal time and the relaxed rule (frozen formulas)."""
    hw, pw = layout.grid[1] * layout.grid[2], layout.per_window
    window = torch.cat([torch.arange(layout.lv) // hw, torch.arange(layout.la) // pw])
    modality = (torch.arange(layout.l) >= layout.lv).long()
    perm = torch.argsort((window * 2 + modality) * layout.l + torch.arange(layout.l))
    vt = (torch.arange(layout.lv) // hw + 0.5).double() * float(layout.video_patch[0] / layout.video_rate)
    at = (torch.arange(layout.la).double() + 0.5) * float(layout.audio_patch / layout.audio_rate)
    return {"perm": perm, "inverse": torch.argsort(perm), "times": torch.cat([vt, at])[perm]}


def test_uniform_layouts_are_bit_identical_to_the_whole_number_rule():
    video, audio = AEGeometry(Fraction(16), 4, 8, 4), AEGeometry(Fraction(16000), 400, 1, 4)
    one = AVTokenLayout.from_geometry(video, audio, 1.0, (16, 16), audio_patch=2)  # 4 windows of 1 + 5 tokens
    a = lambda i, n: list(range(4 + i, 4 + i + n))  # noqa: E731  audio tokens i.. in [video, audio] order
    assert one.perm.tolist() == [0, *a(0, 5), 1, *a(5, 5), 2, *a(10, 5), 3, *a(15, 5)]  # frozen
    two = AVTokenLayout.from_geometry(video, audio, 2.0, (32, 16), video_patch=(2, 2, 2), audio_patch=5)
    a = lambda i, n: list(range(8 + i, 8 + i + n))  # noqa: E731
    assert two.perm.tolist() == [0, 1, *a(0, 4), 2, 3, *a(4, 4), 4, 5, *a(8, 4), 6, 7, *a(12, 4)]  # frozen
    assert one.times.tolist()[:3] == [0.5 * 0.25, 0.5 * 0.05, 1.5 * 0.05]
    assert two.times.tolist()[:3] == [0.25, 0.25, 0.0625]
    encodec_like = AEGeometry(Fraction(24000), 320, 1, 8)  # 75 Hz latents / 3 = 4 per 6.25 Hz window
    tiny = AVTokenLayout.from_geometry(TINY_VIDEO, TINY_AUDIO, 2.0, (64, 64), audio_patch=2)
    for layout in (one, two, tiny, AVTokenLayout.from_geometry(VIDEO25, encodec_like, 1.92, (64, 32), audio_patch=3)):
        ref = old_rule(layout)
        relaxed = AVTokenLayout(*[getattr(layout, f) for f in ("video_latent", "audio_latent", "video_patch",
                                  "audio_patch", "video_rate", "audio_rate", "ref_rate")], relaxed=True)  # fmt: skip
        for x in (layout, relaxed):  # a whole ratio: the relaxed rule gives the same order
            assert torch.equal(x.perm, ref["perm"]) and torch.equal(x.inverse, ref["inverse"])
            assert torch.equal(x.times, ref["times"]) and x.per_window == layout.per_window
            assert torch.equal(x.positions[:, 0], (ref["times"] * x.ref_rate).float())
        assert layout.span == float(layout.grid[0] * layout.video_patch[0] / layout.video_rate) * layout.ref_rate


def test_clip_lengths_round_nothing_and_refuse_with_the_valid_counts():
    from avgen.timeline import clip_lengths, shortest_duration

    with pytest.raises(ValueError, match=r"32 frames at 16 fps.*1 \+ m\*4.*29 \(1.8125 s\), 33 \(2.0625 s\)"):
        AVTokenLayout.from_geometry(WAN_LIKE, DAC16_LIKE, 2.0, (64, 64), relaxed=True)
    with pytest.raises(ValueError, match=r"1 \+ \(m\*2 - 1\)\*4.*29 \(1.8125 s\), 37 \(2.3125 s\)"):
        clip_lengths(WAN_LIKE, DAC16_LIKE, 2.0625, video_patch=(2, 2, 2))
    assert clip_lengths(WAN_LIKE, DAC16_LIKE, 2.0625, audio_patch=1) == (33, 103 * 320)  # 103.125 tokens: 103
    assert clip_lengths(VIDEO25, OOBLECK_LIKE, 1.92, audio_patch=1) == (48, 41 * 2048)  # 41.34 tokens: 41
    assert clip_lengths(TINY_VIDEO, TINY_AUDIO, 2.0) == (32, 32000)  # a whole ratio: exactly the duration
    assert shortest_duration(WAN_LIKE, DAC16_LIKE, 2.0, audio_patch=1) == Fraction(33, 16)
    assert shortest_duration(TINY_VIDEO, TINY_AUDIO, 1.3) == Fraction(3, 2)  # whole windows, as before
    d = shortest_duration(VIDEO25, OOBLECK_LIKE, 1.9, audio_patch=2)  # the audio (whole tokens) must cover it too
    assert clip_lengths(VIDEO25, OOBLECK_LIKE, d)[1] >= 1.9 * 44100 and d < 1.9 + 0.16 + 0.1
    with pytest.raises(ValueError, match="tokens.relaxed=true"):  # no whole ratio, no opt-in: today's error
        AVTokenLayout.from_geometry(VIDEO25, OOBLECK_LIKE, 1.92, (64, 64), audio_patch=1)


def test_a_causal_video_vae_and_the_pipeline_make_clips_of_the_lengths_asked_for():
    """avgen's own VideoVAE with causal=True (1 + 4k frames) beside a 40 Hz audio AE with audio_patch 3 (no whole
    ratio; causal groups by time): the format's lengths encode to the layout's latents and decode back, and every
    task returns what was asked for (extend keeps the two streams on one clock window after window)."""
    from avgen.autoencoders import SeanetAudioAE, VideoVAE
    from avgen.media import AVClip
    from avgen.models.dit import AVDiT
    from avgen.pipeline import AVGenPipeline
    from avgen.tokens import ClipFormat

    torch.manual_seed(0)
    video, audio = VideoVAE(latent_channels=4, width=8, mults=[1, 1, 1], causal=True), SeanetAudioAE(4, n_filters=4)
    config = {"clip": {"duration": 2.0625, "size": [32, 32]}, "sampler": {"steps": 1},
              "tokens": {"video_patch": [1, 2, 2], "audio_patch": 3, "ref_rate": 100.0}}  # fmt: skip
    fmt = ClipFormat.derive(video, audio, config["clip"], config["tokens"])
    layout = fmt.layout(video, audio)
    assert fmt.lengths(video, audio) == layout.media_lengths(video.geometry, audio.geometry) == (33, 27 * 3 * 400)
    with torch.no_grad():
        zv = video.encode(torch.rand(1, 3, 33, 32, 32) * 2 - 1)  # (1, 4, 9, 4, 4)
        za = audio.encode(torch.rand(1, 1, 32400) * 2 - 1)  # (1, 4, 81)
        assert (tuple(zv.shape[1:]), tuple(za.shape[1:])) == (layout.video_latent, layout.audio_latent)
        assert video.decode(zv).shape[2] == 33 and audio.decode(za).shape[2] == 32400
    dit = AVDiT(layout.pv, layout.pa, width=32, depth=1, heads=2, text_dim=16)
    for p in dit.parameters():
        torch.nn.init.normal_(p, std=0.05)
    pipe = AVGenPipeline(dit, video, audio, None, config)
    clip = pipe(duration=2.0)  # not a valid count itself (32 frames): generated at 33, cut to 2 s
    assert (clip.video.shape[0], clip.audio.shape[1]) == (32, 32000)
    v2a = pipe(task="v2a", video=clip.video[:20])
    assert (v2a.video.shape[0], v2a.audio.shape[1]) == (20, 20000)
    a2v = pipe(task="a2v", audio=clip.audio[:, :20800])
    assert (a2v.video.shape[0], a2v.audio.shape[1]) == (21, 20800)  # 1.3 s
    longer = pipe(task="extend", clip=AVClip(video=clip.video, audio=clip.audio, fps=16, sample_rate=16000), seconds=1)
    assert (longer.video.shape[0], longer.audio.shape[1]) == (48, 48000)
    assert torch.equal(longer.video[:32], clip.video) and torch.equal(longer.audio[:, :32000], clip.audio)


def test_text_attention_lets_each_token_see_the_text_of_its_own_time():
    """Video windows of 0.25 s, audio tokens of 0.05 s: which text tokens each may attend to, by their spans."""
    from tests.core_fixtures import tiny_layout

    layout = tiny_layout(1.0)
    inf = float("inf")
    spans = torch.tensor([[[-inf, inf], [0.5, 1.0], [0.3, 0.55], [0.25, 0.25 + 1e-6], [2.0, 3.0]]])  # (1, 5, 2)
    mask = torch.tensor([[True, True, True, True, True]])
    seen = layout.text_attention(spans, mask)  # (1, l, 5)
    v, a = layout.split(seen)  # (1, lv, 5), (1, la, 5)
    per_window = v[0].view(4, -1, 5)  # (t, h*w, s): every place of a window sees the same text
    assert (per_window == per_window[:, :1]).all()
    assert per_window[:, 0].tolist() == [
        [True, False, False, False, False],
        [True, False, True, True, False],
        [True, True, True, False, False],
        [True, True, False, False, False],
    ]
    audio_start = torch.arange(layout.la) * 0.05
    assert torch.equal(a[0, :, 1], audio_start + 0.05 > 0.5 + 1e-9)  # 0.50-0.55 is the first that overlaps 0.5-1.0
    assert torch.equal(a[0, :, 2], (audio_start < 0.55 - 1e-9) & (audio_start + 0.05 > 0.3 + 1e-9))
    assert a[0, :, 0].all() and not seen[..., 4].any()  # untimed: everywhere; after the clip: nowhere
    none = layout.text_attention(spans[:, 1:2], mask[:, :1])  # a token outside the only line sees it anyway
    assert none.all()
    masked = layout.text_attention(spans, torch.tensor([[False, True, True, True, True]]))
    assert not masked[..., 0].any()
