"""transformers' EnCodec and DAC, diffusers' Oobleck: tiny random configs saved with save_pretrained, loaded through
avgen. Geometry from the config, n = m * hop -> m latents -> n samples, equality with the library's own encoder and
decoder, and round trips through load(dir) and avgen's save/load."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from avgen.autoencoders import DiffusersOobleck, HFDac, HFEncodec, load, weights_hash
from avgen.autoencoders.base import AEGeometry


def _encodec(channels: int = 1):
    from transformers import EncodecConfig, EncodecModel

    cfg = EncodecConfig(sampling_rate=8000, audio_channels=channels, hidden_size=8, num_filters=4,
                        upsampling_ratios=[4, 2], num_lstm_layers=1, codebook_size=16,
                        target_bandwidths=[1.5])  # fmt: skip
    return EncodecModel(cfg)


def _dac(ratios=(2, 5)):
    from transformers import DacConfig, DacModel

    cfg = DacConfig(encoder_hidden_size=4, downsampling_ratios=list(ratios), decoder_hidden_size=16, n_codebooks=2,
                    codebook_size=16, codebook_dim=4, sampling_rate=16000)  # fmt: skip
    return DacModel(cfg)


def _oobleck():
    from diffusers import AutoencoderOobleck

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's old weight_norm, inside diffusers
        return AutoencoderOobleck(encoder_hidden_size=8, downsampling_ratios=[2, 4], channel_multiples=[1, 2],
                                  decoder_channels=8, decoder_input_channels=4, audio_channels=2,
                                  sampling_rate=44100)  # fmt: skip


# (build the library model, adapter class, its kind, the geometry its config declares)
CASES = {
    "encodec": (_encodec, HFEncodec, "hf_encodec", AEGeometry(8000, 8, 1, 8, False, 1)),
    "encodec_stereo": (lambda: _encodec(2), HFEncodec, "hf_encodec", AEGeometry(8000, 8, 1, 8, False, 2)),
    "dac": (_dac, HFDac, "hf_dac", AEGeometry(16000, 10, 1, 16, False, 1)),
    "oobleck": (_oobleck, DiffusersOobleck, "diffusers_oobleck", AEGeometry(44100, 8, 1, 4, False, 2)),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def saved(request, tmp_path_factory):
    """(case name, library model with random weights in eval mode, its save_pretrained directory)."""
    torch.manual_seed(0)
    model = CASES[request.param][0]().eval()
    d = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(d)
    return request.param, model, d


def _library(model, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent, decoded) the way the library itself computes the continuous path."""
    if hasattr(model, "quantizer"):  # EnCodec, DAC: encoder output, decoder of it
        z = model.encoder(x)
        return z, model.decoder(z)
    z = model.encode(x).latent_dist.mean  # Oobleck: the posterior mean
    return z, model.decode(z).sample


def test_geometry_from_config_and_lengths(saved):
    name, model, d = saved
    _, cls, kind, geometry = CASES[name]
    ae = load(d)  # recognised by config.json's model_type / _class_name
    assert type(ae) is cls and ae.kind == kind and ae.geometry == geometry and ae.source_dir == d.resolve()
    assert torch.equal(ae.latent_mean, torch.zeros(geometry.latent_channels))  # no published stats: 0 / 1
    assert torch.equal(ae.latent_std, torch.ones(geometry.latent_channels))
    hop, c = geometry.time_stride, geometry.channels
    g = torch.Generator().manual_seed(1)
    for m in (1, 3, 8):  # n = m * hop samples -> m latents -> n samples, exactly
        x = torch.randn(2, c, m * hop, generator=g) * 0.3
        with torch.no_grad():
            z, want_z = ae.encode(x), _library(model, x)[0]
            assert z.shape == (2, geometry.latent_channels, m) == (2, *ae.latent_shape_of(x))
            assert torch.equal(z, want_z)
            assert ae.decode(z).shape == x.shape
    with pytest.raises(ValueError, match=rf"m\*{hop}"):
        ae.encode(torch.zeros(1, c, 3 * hop + 1))


def test_decode_is_the_library_decoder(saved):
    name, model, d = saved
    ae = load(d)
    x = torch.randn(1, CASES[name][3].channels, 40, generator=torch.Generator().manual_seed(2)) * 0.3
    with torch.no_grad():
        z, want = _library(model, x)
        got = ae.decode(z, clamp=False)
    n = min(got.shape[-1], want.shape[-1])  # DAC with a stride of 5 decodes 2 samples short; we repeat the last
    assert torch.equal(got[..., :n], want[..., :n]) and got.shape[-1] == x.shape[-1]
    if name == "oobleck":
        mean, logvar = ae.encode_dist(x)
        dist = model.encode(x).latent_dist
        assert ae.variational and torch.equal(mean, dist.mean) and torch.equal(logvar, dist.logvar)
    else:
        assert not ae.variational and ae.encode_dist(x)[1] is None


def test_avgen_save_load_round_trip(saved, tmp_path):
    name, _, d = saved
    ae = load(d)
    c = ae.geometry.latent_channels
    ae.set_latent_stats(torch.arange(1.0, c + 1), torch.full((c,), 2.0))
    ae.save(tmp_path / "ours")
    meta = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert meta["class"] == CASES[name][2] and "_name_or_path" not in meta["config"]["config"]
    back = load(tmp_path / "ours")
    assert type(back) is type(ae) and weights_hash(back) == weights_hash(ae) and back.geometry == ae.geometry
    x = torch.randn(1, ae.geometry.channels, 4 * ae.geometry.time_stride) * 0.3
    with torch.no_grad():
        assert torch.equal(back.normalize(back.encode(x)), ae.normalize(ae.encode(x)))
        assert torch.equal(back.decode(back.encode(x)), ae.decode(ae.encode(x)))
    assert type(ae).from_pretrained(d).geometry == ae.geometry  # the classmethod `load` uses, called directly
    for where in (d, tmp_path / "ours"):  # a frame rate is for video AEs: one line, not a TypeError
        with pytest.raises(ValueError, match=r"^fps=16: .* holds an audio autoencoder, which takes no frame rate"):
            load(where, fps=16)


def test_dac_odd_stride_is_filled_to_whole_hops(tmp_path):
    """DAC's transposed convolutions return hop*m - 8 samples for strides (2, 4, 5, 8) (the 16/24 kHz configs)."""
    torch.manual_seed(0)
    model = _dac((2, 4, 5, 8)).eval()
    ae = HFDac(model.config.to_dict(), model=model)
    assert (ae.geometry.time_stride, ae.geometry.latent_rate) == (320, 50)
    z = torch.randn(1, ae.geometry.latent_channels, 3)
    with torch.no_grad():
        raw = model.decoder(z)
        out = ae.decode(z, clamp=False)
    assert raw.shape[-1] == 3 * 320 - 8 and out.shape[-1] == 3 * 320
    assert torch.equal(out[..., : raw.shape[-1]], raw) and torch.equal(out[..., -8:], raw[..., -1:].expand(1, 1, 8))


def test_unknown_foreign_directory_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match=r"model_type 'bert' is not an autoencoder avgen can load; known: \['dac'"):
        load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(ValueError, match="_class_name 'AutoencoderKL'"):
        load(tmp_path)
