"""experiment= presets for published autoencoders (wan_dac16k, ltx_encodec24k, ltx_oobleck): each composes with
Hydra, loads through the groups it names tiny random save_pretrained directories that have the published configs'
strides, rates and block structure (widths shrunk: channel counts do not enter token counts), and its clip format
interleaves by the rule it states: a whole number of audio tokens in every later window, or under tokens.relaxed
n or n + 1. Offline; no weights are downloaded."""

from __future__ import annotations

import warnings
from fractions import Fraction

import pytest
import torch
from hydra import compose, initialize_config_dir

from avgen.cli.common import CONFIG_DIR, load_autoencoder
from avgen.tokens import ClipFormat


def _wan():
    from diffusers import AutoencoderKLWan

    # Wan2.1-T2V-1.3B-Diffusers/vae: dim_mult [1, 2, 4, 4], temperal_downsample [false, true, true]
    return AutoencoderKLWan(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True], latents_mean=[0.0] * 4,
                            latents_std=[1.0] * 4)  # fmt: skip


def _ltx():
    from diffusers import AutoencoderKLLTXVideo

    # Lightricks/LTX-Video vae: 4 LTXVideoDownBlock3D, spatio_temporal_scaling [true, true, true, false], patch_size 4
    return AutoencoderKLLTXVideo(latent_channels=4, block_out_channels=(4, 4, 4, 4),
                                 decoder_block_out_channels=(4, 4, 4, 4), layers_per_block=(1, 1, 1, 1, 1),
                                 decoder_layers_per_block=(1, 1, 1, 1, 1),
                                 spatio_temporal_scaling=(True, True, True, False), patch_size=4)  # fmt: skip


def _dac16k():
    from transformers import DacConfig, DacModel

    # descript/dac_16khz: downsampling_ratios [2, 4, 5, 8], sampling_rate 16000
    return DacModel(DacConfig(encoder_hidden_size=2, downsampling_ratios=[2, 4, 5, 8], decoder_hidden_size=16,
                              n_codebooks=2, codebook_size=16, codebook_dim=4, sampling_rate=16000))  # fmt: skip


def _encodec24k():
    from transformers import EncodecConfig, EncodecModel

    # facebook/encodec_24khz: upsampling_ratios [8, 5, 4, 2], sampling_rate 24000, mono
    return EncodecModel(EncodecConfig(sampling_rate=24000, audio_channels=1, hidden_size=8, num_filters=2,
                                      upsampling_ratios=[8, 5, 4, 2], num_lstm_layers=1, codebook_size=16,
                                      target_bandwidths=[1.5]))  # fmt: skip


def _oobleck():
    from diffusers import AutoencoderOobleck

    # stabilityai/stable-audio-open-1.0 vae: downsampling_ratios [2, 4, 4, 8, 8], 44100 Hz, stereo
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's old weight_norm, inside diffusers
        return AutoencoderOobleck(encoder_hidden_size=4, downsampling_ratios=[2, 4, 4, 8, 8],
                                  channel_multiples=[1, 1, 1, 1, 1], decoder_channels=4, decoder_input_channels=2,
                                  audio_channels=2, sampling_rate=44100)  # fmt: skip


# name: (build, what the published config declares: (rate, time stride, spatial stride, causal, channels))
AES = {
    "wan": (_wan, (16, 4, 8, True, 3)),
    "ltx": (_ltx, (25, 8, 32, True, 3)),
    "dac16k": (_dac16k, (16000, 320, 1, False, 1)),
    "encodec24k": (_encodec24k, (24000, 320, 1, False, 1)),
    "oobleck": (_oobleck, (44100, 2048, 1, False, 2)),
}
# preset: (video AE, audio AE, video tokens, audio tokens, audio tokens in each window but the first and the last)
PRESETS = {
    "wan_dac16k": ("wan", "dac16k", 2560, 240, {25}),
    "ltx_encodec24k": ("ltx", "encodec24k", 3328, 145, {12}),
    "ltx_oobleck": ("ltx", "oobleck", 3328, 83, {6, 7}),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """name -> a save_pretrained directory of the tiny AE with the published strides (random weights)."""
    out = {}
    for name, (build, _) in AES.items():
        torch.manual_seed(0)
        out[name] = tmp_path_factory.mktemp(name)
        build().save_pretrained(out[name])
    return out


def preset(name: str, saved: dict, *overrides: str):
    video, audio, *_ = PRESETS[name]
    paths = [f"video_ae.path={saved[video]}", f"audio_ae.path={saved[audio]}"]
    root = [] if "data=avworld" in overrides else ["data.root=/videos"]  # the preset's data=folder needs one
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        return compose("train", overrides=[f"experiment={name}", *paths, *root, *overrides])


def declared(ae) -> tuple:
    g = ae.geometry
    return g.input_rate, g.time_stride, g.spatial_stride, g.causal, g.channels


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_loads_its_autoencoders_and_interleaves(name, saved):
    cfg = preset(name, saved)
    video_name, audio_name, lv, la, later = PRESETS[name]
    assert cfg.trainer.device == "cuda" and cfg.model.preset in ("small", "base", "large") and cfg.latents is None
    video, audio = load_autoencoder(cfg.video_ae, "video_ae"), load_autoencoder(cfg.audio_ae, "audio_ae")
    assert declared(video) == AES[video_name][1] and declared(audio) == AES[audio_name][1]
    fmt = ClipFormat.derive(video, audio, cfg.clip, cfg.tokens)
    layout = fmt.layout(video, audio)
    assert (layout.lv, layout.la) == (lv, la), layout.describe()
    # audio tokens per later window (pt latent frames of time_stride frames): whole unless the preset opts out
    pt, k = fmt.video_patch[0], fmt.audio_patch
    per_window = audio.geometry.latent_rate / k * pt * video.geometry.time_stride / video.geometry.input_rate
    assert (per_window.denominator != 1) == fmt.relaxed, (name, per_window)
    counts = torch.bincount(layout.audio_windows, minlength=layout.grid[0]).tolist()
    assert set(counts[1:-1]) == later == {int(per_window), -(-per_window.numerator // per_window.denominator)}
    assert counts[-1] in (min(later) - 1, *later)  # the audio ends within one token of the video's last frame
    first = layout.edges[1]  # the causal first window: one frame (pt 1) or 1 + stride frames (pt 2)
    assert counts[0] == sum(1 for i in range(la) if (i + Fraction(1, 2)) * k / audio.geometry.latent_rate < first)
    xv, xa = torch.randn(1, layout.lv, 2), torch.randn(1, layout.la, 2)
    back = layout.split(layout.interleave(xv, xa))
    assert torch.equal(back[0], xv) and torch.equal(back[1], xa)
    frames, samples = fmt.lengths(video, audio)
    assert (frames, samples) == layout.media_lengths(video.geometry, audio.geometry)
    assert frames == fmt.duration * fmt.fps  # the preset's duration is a frame count the causal VAE takes
    print(f"{name}: {frames} frames, {samples} samples; {layout.describe()}; first/last window {counts[0]}/"
          f"{counts[-1]} audio tokens")  # fmt: skip


class HashText:
    """A stand-in text encoder: caption -> fixed random states (no model load)."""

    dim = 8

    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        states = torch.stack([torch.randn(2, self.dim, generator=torch.Generator().manual_seed(len(c)))
                              for c in captions])  # fmt: skip
        return states, torch.ones(len(captions), 2, dtype=torch.bool)


def test_stereo_preset_reads_encodes_and_caches_in_stereo(saved, tmp_path):
    """ltx_oobleck's audio AE is stereo: avgen-train's data (on the fly) and tools/cache_latents.py (at --fps) read
    clips with the AE's channels, and both give the same tokens. A short, small clip of the preset's format."""
    from avgen.cli.train import _batcher
    from tools.cache_latents import main as cache_latents

    small = ["data=avworld", "clip.duration=0.36", "clip.size=[64,64]"]  # 9 frames: 1 + 8
    cfg = preset("ltx_oobleck", saved, *small)
    video, audio = load_autoencoder(cfg.video_ae, "video_ae"), load_autoencoder(cfg.audio_ae, "audio_ae")
    fmt = ClipFormat.derive(video, audio, cfg.clip, cfg.tokens)
    layout = fmt.layout(video, audio)
    assert fmt.channels == 2 and (layout.lv, layout.la) == (2 * 2 * 2, 7)
    fly, _ = _batcher(cfg, fmt, layout, video, audio, HashText(), "cpu")
    xv, xa, *_ = fly([0, 1])
    assert xv.shape == (2, layout.lv, layout.pv) and xa.shape == (2, layout.la, layout.pa)

    def cache(fps: str, duration: str) -> int:
        return cache_latents(["--video-ae", str(saved["ltx"]), "--fps", fps, "--audio-ae", str(saved["oobleck"]),
                              "--count", "2", "--duration", duration, "--size", "64", "--audio-patch", "1",
                              "--out", str(tmp_path / "lat")])  # fmt: skip

    assert cache("25", "0.36") == 0
    cached, _ = _batcher(preset("ltx_oobleck", saved, *small, f"latents={tmp_path / 'lat'}"), fmt, layout, video,
                         audio, HashText(), "cpu")  # fmt: skip
    cv, ca, *_ = cached([0, 1])
    torch.testing.assert_close(cv, xv)
    torch.testing.assert_close(ca, xa)
    assert cache("30", "0.3") == 0  # 9 frames at 30 fps: re-encoded; refused at 25 fps
    with pytest.raises(ValueError, match=r"encoded at 30 fps, but the video autoencoder runs at 25 fps"):
        _batcher(preset("ltx_oobleck", saved, *small, f"latents={tmp_path / 'lat'}"), fmt, layout, video, audio,
                 HashText(), "cpu")  # fmt: skip
