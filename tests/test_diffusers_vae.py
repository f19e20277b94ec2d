"""diffusers video VAE adapters (Wan, LTX-Video, CogVideoX) on tiny random configs saved with `save_pretrained`.

Each is loaded back through avgen (`load(dir)` and `from_diffusers`); the geometry it declares from its config must
predict the real latent shapes and frame counts (1 + k*stride frames -> 1 + k latents -> 1 + k*stride frames), its
outputs must be the diffusers model's own, its stats the published normalisation, and avgen's save / load must
round-trip it exactly. Offline: the weights are random, a few hundred KB.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKLCogVideoX, AutoencoderKLLTXVideo, AutoencoderKLWan
from omegaconf import OmegaConf

from avgen.autoencoders import load, weights_hash
from avgen.autoencoders.base import AEGeometry
from avgen.autoencoders.diffusers_video import CogVideoXVAE, LTXVideoVAE, WanVAE
from avgen.errors import InputError, MissingDependencyError, MissingFileError

CONF = Path(__file__).resolve().parents[1] / "avgen" / "conf" / "video_ae"
MEAN, STD = [0.5, -0.25, 0.125, 1.0], [2.0, 0.5, 1.5, 4.0]
# name: (diffusers class, tiny config, adapter, conf file, (time stride, spatial stride, latent channels))
CASES = {
    "wan": (AutoencoderKLWan, dict(base_dim=4, z_dim=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                   latents_mean=MEAN, latents_std=STD), WanVAE, "wan", (4, 8, 4)),
    "ltx": (AutoencoderKLLTXVideo, dict(latent_channels=4, block_out_channels=(4, 4, 4, 4), patch_size=1,
                                        decoder_block_out_channels=(4, 4, 4, 4), layers_per_block=(1, 1, 1, 1, 1),
                                        decoder_layers_per_block=(1, 1, 1, 1, 1), timestep_conditioning=True,
                                        scaling_factor=0.5), LTXVideoVAE, "ltx_video", (8, 8, 4)),
    "cog": (AutoencoderKLCogVideoX, dict(block_out_channels=(4, 4, 4, 4), latent_channels=4, layers_per_block=1,
                                         norm_num_groups=2, scaling_factor=0.7), CogVideoXVAE, "cogvideox", (4, 8, 4)),
}  # fmt: skip


def video(t: int, b: int = 1, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, t, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module", params=sorted(CASES))
def saved(request, tmp_path_factory):
    """(case name, diffusers model with random weights, the directory save_pretrained wrote it to)."""
    model_cls, config, *_ = CASES[request.param]
    torch.manual_seed(0)
    model = model_cls(**config).eval()
    if request.param == "ltx":  # LTX keeps its published stats as buffers
        model.latents_mean.copy_(torch.tensor(MEAN))
        model.latents_std.copy_(torch.tensor(STD))
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(directory)
    return request.param, model, directory


def test_geometry_comes_from_the_config(saved):
    name, model, directory = saved
    _, _, adapter, _, (stride, spatial, channels) = CASES[name]
    ae = load(directory)
    assert type(ae) is adapter and not ae.training
    assert ae.geometry == AEGeometry(adapter.default_fps, stride, spatial, channels, causal=True, channels=3)
    ntsc = adapter.from_diffusers(directory, fps="30000/1001")
    assert ntsc.geometry.input_rate == Fraction(30000, 1001) and ntsc.config["fps"] == "30000/1001"
    assert load(directory, fps=24).geometry.latent_rate == Fraction(24, stride)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_frame_rule_shapes_and_outputs_are_the_models_own(saved, k):
    """1 + k*stride frames -> 1 + k latents -> 1 + k*stride frames, with the diffusers model's own numbers."""
    name, model, directory = saved
    ae = load(directory)
    s = ae.geometry.time_stride
    x = video(1 + k * s, b=2)
    with torch.no_grad():
        mean, logvar = ae.encode_dist(x)
        dist = model.encode(x).latent_dist
        assert torch.equal(mean, dist.mean) and torch.equal(logvar, dist.logvar)
        assert mean.shape[1:] == ae.latent_shape_of(x) == (4, 1 + k, 2, 2)
        assert mean.shape[1:] == ae.latent_shape(Fraction(1 + k * s, ae.geometry.input_rate), (16, 16))
        x_hat = ae.decode(mean, clamp=False)
        assert x_hat.shape == x.shape and ae.geometry.input_length(1 + k) == x.shape[2]
        temb = {"temb": torch.zeros(2)} if name == "ltx" else {}
        raw = model.decode(mean, **temb).sample
    # CogVideoX decodes an even latent count to 4 * (1 + k) frames (its first latent 4 times): the adapter keeps the
    # last 1 + 4k; Wan and LTX-Video give 1 + k*stride themselves
    extra = 3 if name == "cog" and (1 + k) % 2 == 0 else 0
    assert raw.shape[2] == x.shape[2] + extra and torch.equal(x_hat, raw[:, :, extra:])
    with pytest.raises(InputError, match=f"1 \\+ m\\*{s}"):
        ae.encode(video(2 * s))  # not 1 + k*stride frames: refused, naming valid counts


def test_stats_are_the_published_normalisation(saved):
    name, model, directory = saved
    ae = load(directory)
    z = ae.encode(video(1 + ae.geometry.time_stride))
    mean, std = torch.tensor(MEAN).view(1, -1, 1, 1, 1), torch.tensor(STD).view(1, -1, 1, 1, 1)
    published = {
        "wan": lambda z: (z - mean) * (1.0 / std),  # the Wan pipeline's latents_mean / (1 / latents_std)
        "ltx": lambda z: (z - mean) * 0.5 / std,  # LTX's _normalize_latents with scaling_factor 0.5
        "cog": lambda z: z * 0.7,  # CogVideoX: scaling_factor only
    }[name]
    torch.testing.assert_close(ae.normalize(z), published(z))
    torch.testing.assert_close(ae.denormalize(ae.normalize(z)), z)


def test_avgen_save_and_load_round_trip(saved, tmp_path):
    name, model, directory = saved
    ae = load(directory)
    ae.set_latent_stats(torch.arange(4.0), torch.arange(1.0, 5.0))  # measured stats replace the published ones
    ae.save(tmp_path / "ours")
    meta = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert meta["class"] == ae.kind == f"diffusers_{CASES[name][3]}" and meta["config"]["fps"] == str(ae.default_fps)
    back = load(tmp_path / "ours")
    assert type(back) is type(ae) and back.geometry == ae.geometry and back.config == ae.config
    assert weights_hash(back) == weights_hash(ae) and torch.equal(back.latent_std, torch.arange(1.0, 5.0))
    x = video(1 + ae.geometry.time_stride, seed=3)
    with torch.no_grad():
        assert torch.equal(back.encode(x), ae.encode(x))
        assert torch.equal(back.decode(ae.encode(x)), ae.decode(ae.encode(x)))
    assert load(tmp_path / "ours", fps=ae.default_fps).geometry == ae.geometry  # the recorded rate, given again
    with pytest.raises(InputError, match=r"fps=30 \(video_ae.fps\) conflicts with .*ours/config.json"):
        load(tmp_path / "ours", fps=30)


def test_hydra_config_loads_the_directory(saved, tmp_path):
    """avgen/conf/video_ae/<name>.yaml loads `path` at the fps it states; the default group (video_ae.path=DIR) at
    video_ae.fps; an avgen save or a reference records its rate, and a group's different fps is refused naming it."""
    from avgen.autoencoders.reference import export_autoencoder
    from avgen.cli.common import load_autoencoder, user_message

    def said(group) -> str:  # the line avgen-train prints (a _target_'s error comes wrapped by Hydra)
        with pytest.raises(Exception) as e:
            load_autoencoder(group, "video_ae")
        return user_message(e.value)

    name, model, directory = saved
    group = OmegaConf.load(CONF / f"{CASES[name][3]}.yaml")
    group.path = str(directory)
    ae = load_autoencoder(group, "video_ae")
    assert type(ae) is CASES[name][2] and ae.geometry.input_rate == group.fps == ae.default_fps
    if name == "ltx":  # null keeps the saved decode timestep (0.0 for a diffusers directory); a value replaces it
        assert group.decode_timestep is None and ae.decode_timestep == 0.0
        group.decode_timestep = 0.05
        assert load_autoencoder(group, "video_ae").config["decode_timestep"] == 0.05
    default = OmegaConf.load(CONF / "default.yaml")
    assert default.fps is None
    default.path = str(directory)
    assert load_autoencoder(default, "video_ae").geometry == ae.geometry  # fps null: the class's default
    default.fps = "30000/1001"
    ntsc = load_autoencoder(default, "video_ae")
    assert type(ntsc) is CASES[name][2] and ntsc.geometry.input_rate == Fraction(30000, 1001)
    ntsc.save(tmp_path / "ours")  # records its fps; a model directory referencing the original records it too
    export_autoencoder(ntsc, tmp_path / "model" / "video_ae", reference=True)
    for saved_dir in (tmp_path / "ours", tmp_path / "model" / "video_ae"):
        assert load(saved_dir).geometry == ntsc.geometry  # not the class's default fps
        for g in (group, default):  # fps 16/25/8 from the group file, or set on the command line
            g.path, g.fps = str(saved_dir), 24
            assert re.match(r"fps=24 \(video_ae.fps\) conflicts with .*30000/1001 fps", said(g))
            g.fps = None
            assert load_autoencoder(g, "video_ae").geometry == ntsc.geometry
    other = next(n for n in CASES if n != name)
    wrong = OmegaConf.load(CONF / f"{CASES[other][3]}.yaml")
    wrong.path = str(directory)
    assert f"holds {ae.kind}, not {CASES[other][0].__name__}" in said(wrong)


def test_directories_that_cannot_work_are_refused(saved, tmp_path):
    name, model, directory = saved
    other = next(c for n, (_, _, c, _, _) in CASES.items() if n != name)
    with pytest.raises(InputError, match="_class_name"):
        other.from_diffusers(directory)
    pipeline = tmp_path / "pipeline"  # a pipeline directory: the VAE sits in vae/
    shutil.copytree(directory, pipeline / "vae")
    assert type(load(pipeline)) is CASES[name][2]
    (pipeline / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(MissingFileError, match="save_pretrained"):
        load(pipeline)


def test_missing_diffusers_names_the_extra(saved, monkeypatch):
    name, model, directory = saved
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'avgen\[vae\]'"):
        load(directory)


def test_importing_avgen_does_not_import_diffusers():
    """With diffusers made unimportable, avgen and its autoencoder table still import (diffusers is imported lazily)."""
    code = ("import sys; sys.modules['diffusers'] = None; import avgen, avgen.autoencoders.io as io; "
            "print(sorted(k for k in io.known_kinds() if k.startswith('diffusers_')))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['diffusers_cogvideox', 'diffusers_ltx_video', 'diffusers_oobleck', 'diffusers_wan']"
