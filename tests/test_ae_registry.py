"""An open registry and references: a user's own AE class reaches load(), the trainer's loader and model directories
(an entry point of a real installed distribution, or a Hydra _target_), and a model directory may reference a large
AE by a relative path plus its weights hash instead of copying it."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from omegaconf import OmegaConf

from avgen.autoencoders import SeanetAudioAE, VideoVAE, known_kinds, load, weights_hash
from avgen.autoencoders.reference import REFERENCE_NAME, export_autoencoder, write_reference

PLUGIN = '''
import torch
from torch import nn
from fractions import Fraction
from avgen.autoencoders.base import AEGeometry, Autoencoder


class TinyAE(Autoencoder):
    """16 kHz mono -> 40 Hz, a user's own class: one strided convolution each way."""

    modality, kind, variational = "audio", "tiny_plugin", False

    def __init__(self, latent_channels: int = 4) -> None:
        super().__init__()
        self.enc = nn.Conv1d(1, latent_channels, 400, stride=400)
        self.dec = nn.ConvTranspose1d(latent_channels, 1, 400, stride=400)
        self.config = {"latent_channels": latent_channels}
        self.geometry = AEGeometry(Fraction(16000), 400, 1, latent_channels)
        self._init_stats(latent_channels)

    def encode_dist(self, x):
        self.check_input(x)
        return self.enc(x), None  # (b, c, n / 400)

    def _decode(self, z):
        return self.dec(z)  # (b, 1, m * 400)
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """A distribution installed on sys.path (package + dist-info with entry_points.txt), found by importlib.metadata."""
    site = tmp_path_factory.mktemp("site")
    (site / "avgen_tiny_plugin").mkdir()
    (site / "avgen_tiny_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "avgen_tiny_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: avgen-tiny-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[avgen.autoencoders]\ntiny_plugin = avgen_tiny_plugin:TinyAE\n")
    sys.path.insert(0, str(site))
    import avgen_tiny_plugin

    yield avgen_tiny_plugin.TinyAE
    sys.path.remove(str(site))
    sys.modules.pop("avgen_tiny_plugin", None)


def test_entry_point_class_reaches_load(plugin, tmp_path):
    assert "tiny_plugin" in known_kinds() and "hf_dac" in known_kinds()
    torch.manual_seed(0)
    ae = plugin()
    ae.save(tmp_path / "ae")
    back = load(tmp_path / "ae")
    assert type(back) is plugin and weights_hash(back) == weights_hash(ae)
    x = torch.randn(1, 1, 1600)
    with torch.no_grad():
        assert torch.equal(back.decode(back.encode(x)), ae.decode(ae.encode(x)))


def test_target_class_reaches_the_trainer_loader_and_a_model_directory(plugin, tmp_path):
    """audio_ae._target_ builds the user's class (load_autoencoder, as avgen-train calls it); the model directory
    exported from it loads through from_pretrained's load(), its kind found among the entry points."""
    from avgen.cli.common import load_autoencoder
    from tests.core_fixtures import tiny_model_dir

    torch.manual_seed(0)
    ae = load_autoencoder(OmegaConf.create({"_target_": "avgen_tiny_plugin.TinyAE", "latent_channels": 4}), "audio_ae")
    assert type(ae) is plugin and not ae.training
    d = tiny_model_dir(tmp_path / "model")
    export_autoencoder(ae, d / "audio_ae")  # what export_model does for each part
    back = load(d / "audio_ae")
    assert type(back) is plugin and weights_hash(back) == weights_hash(ae)


def test_unregistered_class_names_the_entry_point_group(tmp_path):
    ae = SeanetAudioAE(latent_channels=4, n_filters=4)
    ae.kind = "mine"  # a class of the user's own, not registered
    with pytest.warns(UserWarning, match="entry-point group 'avgen.autoencoders'"):
        export_autoencoder(ae, tmp_path / "a")
    with pytest.raises(ValueError, match=r"unknown autoencoder class 'mine'.*entry-point group 'avgen.autoencoders'"):
        load(tmp_path / "a")


@pytest.fixture
def big(tmp_path):
    """A 'large' AE saved once under weights/ and loaded from there (so it knows its directory)."""
    torch.manual_seed(0)
    VideoVAE(latent_channels=4, width=8, mults=[1, 1, 1], blocks=1, latent_blocks=1).save(tmp_path / "weights" / "vae")
    ae = load(tmp_path / "weights" / "vae")
    ae.set_latent_stats(torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.tensor([1.5, 2.0, 2.5, 3.0]))
    return ae


def test_reference_by_relative_path_loads_the_same_weights(big, tmp_path):
    from avgen.model_dir import export_model
    from avgen.models.dit import AVDiT
    from tests.core_fixtures import tiny_model_dir

    d = tiny_model_dir(tmp_path / "model")
    (d / "video_ae" / "model.safetensors").write_bytes(b"an older copy")  # replaced by the reference
    audio = load(d / "audio_ae")
    config = json.loads((d / "dit" / "config.json").read_text())
    net = AVDiT(**config.pop("dit"))
    export_model(net, d, config, big, audio, reference=["video"])
    ref = json.loads((d / "video_ae" / REFERENCE_NAME).read_text())
    assert ref["path"] == "../../weights/vae" and ref["root"] is None and ref["class"] == "video_vae"
    assert sorted(p.name for p in (d / "video_ae").iterdir()) == [REFERENCE_NAME]  # the old copy is gone
    assert (d / "audio_ae" / "model.safetensors").is_file()  # copying stays the default
    back = load(d / "video_ae")
    assert weights_hash(back) == weights_hash(big) == ref["weights_sha256"]
    assert torch.equal(back.latent_std, big.latent_std)  # the stats travel in reference.json
    (tmp_path / "elsewhere").mkdir()
    moved = (tmp_path / "model").rename(tmp_path / "elsewhere" / "model")
    with pytest.raises(FileNotFoundError, match=r"references .*weights/vae, which is not a directory"):
        load(moved / "video_ae")  # relative to the folder: moving the model alone breaks it, said so


def test_reference_to_a_named_root(big, tmp_path, monkeypatch):
    monkeypatch.setenv("AVGEN_WEIGHTS", str(tmp_path / "weights"))
    write_reference(big, tmp_path / "m" / "video_ae", root="AVGEN_WEIGHTS")
    ref = json.loads((tmp_path / "m" / "video_ae" / REFERENCE_NAME).read_text())
    assert (ref["root"], ref["path"]) == ("AVGEN_WEIGHTS", "vae")
    (tmp_path / "weights").rename(tmp_path / "w2")  # the weights move; the root follows them
    monkeypatch.setenv("AVGEN_WEIGHTS", str(tmp_path / "w2"))
    assert weights_hash(load(tmp_path / "m" / "video_ae")) == weights_hash(big)
    monkeypatch.delenv("AVGEN_WEIGHTS")
    with pytest.raises(FileNotFoundError, match="root AVGEN_WEIGHTS, which is not set: set AVGEN_WEIGHTS=DIR"):
        load(tmp_path / "m" / "video_ae")
    with pytest.raises(ValueError, match="must be an environment variable named AVGEN_"):
        write_reference(big, tmp_path / "m2", root="HOME")


def test_reference_hash_mismatch_and_absolute_path_are_refused(big, tmp_path):
    write_reference(big, tmp_path / "m" / "video_ae")
    path = tmp_path / "m" / "video_ae" / REFERENCE_NAME
    ref = json.loads(path.read_text())
    path.write_text(json.dumps({**ref, "weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match=r"expects weights 0000000000000000… but .*weights/vae holds "
                                         + weights_hash(big)[:16]):  # fmt: skip
        load(tmp_path / "m" / "video_ae")
    path.write_text(json.dumps({**ref, "path": str(tmp_path / "weights" / "vae")}))
    with pytest.raises(ValueError, match="is absolute; a reference must be relative"):
        load(tmp_path / "m" / "video_ae")
    fresh = VideoVAE(latent_channels=4, width=8, mults=[1, 1, 1], blocks=1, latent_blocks=1)
    with pytest.raises(ValueError, match="was not loaded from a directory"):
        write_reference(fresh, tmp_path / "m3")


def test_train_checks_export_reference_before_training(big, tmp_path):
    from avgen.cli.train import _export_options

    cfg = OmegaConf.create({"export": {"reference": ["video"], "root": None}})
    fresh = SeanetAudioAE(latent_channels=4, n_filters=4)
    assert _export_options(cfg, tmp_path / "run", big, fresh) == {"reference": ["video"], "root": None}
    with pytest.raises(ValueError, match="was not loaded from a directory"):
        _export_options(OmegaConf.create({"export": {"reference": ["audio"]}}), tmp_path, big, fresh)
    with pytest.raises(ValueError, match="export.reference=.*video and/or audio"):
        _export_options(OmegaConf.create({"export": {"reference": ["dit"]}}), tmp_path, big, fresh)
