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
