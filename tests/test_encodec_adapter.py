"""EnCodec 24 kHz adapter: it must be EnCodec's own encoder and decoder, bit for bit, loaded from a local file.

Meta's weights are not available offline, so the test writes a randomly initialised
`EncodecModel.encodec_model_24khz(pretrained=False)` state dict under the official file name and loads that: the same
format and keys as the published checkpoint, so equality here means equality with the real one.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from encodec import EncodecModel

from avgen.autoencoders import EncodecAdapter, load, weights_hash
from avgen.autoencoders.encodec import CHECKPOINT_NAME


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(EnCodec model with random weights, path of its state dict saved as the official checkpoint file)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = EncodecModel.encodec_model_24khz(pretrained=False).eval()
    path = tmp_path_factory.mktemp("encodec") / CHECKPOINT_NAME
    torch.save(model.state_dict(), path)
    return model, path


def test_adapter_equals_encodec_encoder_and_decoder(reference):
    model, path = reference
    assert CHECKPOINT_NAME == "encodec_24khz-d7cc33bc.th"
    ae = EncodecAdapter.from_checkpoint(path)
    x = (torch.randn(1, 1, 24000, generator=torch.Generator().manual_seed(1)) * 0.1).clamp(-1, 1)  # 1 s
    with torch.no_grad():
        z = ae.encode(x)
        want_z = model.encoder(x)
        assert torch.equal(z, want_z) and z.shape == (1, 128, 75)
        assert torch.equal(ae.decode(z, clamp=False), model.decoder(want_z))
        assert not ae.variational and ae.encode_dist(x)[1] is None
        assert torch.equal(ae.encode(x, sample=True), z)  # deterministic: sampling returns the mean


@pytest.mark.parametrize("seconds", [1, 2, 3])
def test_adapter_geometry_and_shapes(reference, seconds):
    ae = EncodecAdapter.from_checkpoint(reference[1])
    g = ae.geometry
    assert (g.input_rate, g.time_stride, g.latent_channels, g.latent_rate, g.causal) == (24000, 320, 128, 75, False)
    x = torch.zeros(1, 1, 24000 * seconds)
    with torch.no_grad():
        z = ae.encode(x)
        assert z.shape[1:] == ae.latent_shape(seconds) == (128, 75 * seconds)
        assert ae.decode(z).shape == x.shape


def test_adapter_errors(reference, tmp_path):
    with pytest.raises(FileNotFoundError, match=CHECKPOINT_NAME.replace(".", r"\.")):
        EncodecAdapter.from_checkpoint(tmp_path / CHECKPOINT_NAME)
    ae = EncodecAdapter.from_checkpoint(reference[1])
    with pytest.raises(ValueError, match=r"m\*320.*24000"):
        ae.encode(torch.zeros(1, 1, 24001))


def test_adapter_save_load_without_pickle(reference, tmp_path, monkeypatch):
    ae = EncodecAdapter.from_checkpoint(reference[1])
    ae.save(tmp_path / "encodec")
    reference[1].rename(tmp_path / "moved.th")  # the saved adapter must not need the .th file any more
    try:
        monkeypatch.setattr(torch, "load", lambda *a, **k: (_ for _ in ()).throw(AssertionError("torch.load")))
        back = load(tmp_path / "encodec")
    finally:
        (tmp_path / "moved.th").rename(reference[1])
    assert type(back) is EncodecAdapter and weights_hash(back) == weights_hash(ae)
    x = torch.randn(1, 1, 3200) * 0.1
    with torch.no_grad():
        assert torch.equal(back.encode(x), ae.encode(x))


def test_encodec24k_config_group_loads_through_the_trainer_loader(reference):
    """audio_ae=encodec24k composes and builds (it has a checkpoint file, not a path; the loader used to read .path)."""
    from hydra import compose, initialize_config_dir

    from avgen.cli.common import CONFIG_DIR, load_autoencoder

    _, path = reference
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=["audio_ae=encodec24k", f"audio_ae.checkpoint={path}"])
    ae = load_autoencoder(cfg.audio_ae, "audio_ae")
    assert isinstance(ae, EncodecAdapter) and not ae.training and ae.geometry.latent_rate == 75
