"""Every config group composes, and the buildable ones instantiate."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from avgen.cli.common import CONFIG_DIR

CONF = Path(CONFIG_DIR)


@pytest.mark.parametrize("ae", sorted(p.stem for p in (CONF / "ae").glob("*.yaml")))
def test_train_ae_configs_compose_and_build(ae):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train_ae", overrides=[f"ae={ae}"])
    model = instantiate(cfg.ae.model)
    loss = instantiate(cfg.ae.loss)
    assert model.modality in ("video", "audio") and callable(loss)
    assert instantiate(cfg.data)[0].video.shape[0] == 32


def test_core_groups_build():
    import yaml

    for name in ("objective/flow.yaml",):
        assert instantiate(yaml.safe_load((CONF / name).read_text())) is not None
    from avgen.models.dit import PRESETS

    for preset in PRESETS.values():
        assert preset["width"] % preset["heads"] == 0
    for sampler in (CONF / "sampler").glob("*.yaml"):
        cfg = yaml.safe_load(sampler.read_text())
        assert cfg["method"] in ("euler", "heun") and cfg["steps"] >= 1


def test_folder_data_requires_root(tmp_path):
    """data=folder without data.root: one line from avgen-train-ae that names the key, before any work is done."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "avgen.cli.train_ae", "data=folder", "out_dir=never"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: data.root is required: add data.root=... to the command line"


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "override",
    [f"model={m}" for m in _options("model")]
    + [f"experiment={e}" for e in _options("experiment")]
    + [f"sampler={s}" for s in _options("sampler")]
    + [f"audio_ae={a}" for a in _options("audio_ae")],
)
def test_train_configs_compose(override):
    from avgen.models.dit import PRESETS
    from avgen.train.loop import TrainConfig

    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train", overrides=[override, "latents=/nowhere"])
    TrainConfig(**cfg.trainer)  # every trainer key is a real option
    assert cfg.model.preset in PRESETS and cfg.sampler.method in ("euler", "heun")


def test_generate_config_composes_with_free_text():
    from avgen.cli.generate import quote_free_text

    args = quote_free_text(["prompt=a man says 'hi, there' ${x}", "model=/m", "task=a2v", "seed=3"])
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF / "generate")):
        cfg = compose("generate", overrides=args)
    assert cfg.prompt == "a man says 'hi, there' ${x}" and cfg.model == "/m" and cfg.task == "a2v" and cfg.seed == 3


def test_only_user_errors_become_one_line(capsys):
    """avgen.errors decides what a user error is; a plain ValueError (a bug) keeps its traceback."""
    from hydra.errors import InstantiationException

    from avgen.cli.common import friendly_errors
    from avgen.errors import InputError, MissingFileError

    def raising(exc):
        @friendly_errors
        def entry():
            raise exc

        return entry

    def wrapped():
        try:
            raise MissingFileError("media folder /x does not exist: set data.root")
        except MissingFileError as e:  # what hydra.utils.instantiate does with an error in a _target_
            raise InstantiationException("Error in call to target 'avgen.data.folder.MediaFolder'") from e

    cases = [(raising(InputError("trainer.x=1 is wrong\nmore detail")), "error: trainer.x=1 is wrong"),
             (friendly_errors(wrapped), "error: media folder /x does not exist: set data.root")]  # fmt: skip
    for entry, line in cases:
        with pytest.raises(SystemExit) as stop:
            entry()
        assert stop.value.code == 2 and capsys.readouterr().err == line + "\n"
    with pytest.raises(ValueError, match="a bug"):
        raising(ValueError("a bug"))()


def test_configs_name_code_presets_and_restate_none_of_them():
    """One source per model size: the code presets. A config names one and leaves every size key null."""
    import yaml

    from avgen.autoencoders.audio import AUDIO_PRESETS
    from avgen.autoencoders.video import VIDEO_PRESETS
    from avgen.models.dit import PRESETS

    for path in sorted((CONF / "model").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text())
        assert cfg["preset"] == path.stem and cfg["preset"] in PRESETS, path
        assert all(v is None for k, v in cfg.items() if k != "preset"), (path, cfg)
        assert set(PRESETS[path.stem]) <= set(cfg), path  # every preset key can be overridden from the command line
    tables = {"avgen.autoencoders.audio.SeanetAudioAE.preset": AUDIO_PRESETS,
              "avgen.autoencoders.video.VideoVAE.preset": VIDEO_PRESETS}  # fmt: skip
    for path in sorted((CONF / "ae").glob("*.yaml")):
        model = yaml.safe_load(path.read_text())["ae"]["model"]
        table = tables[model["_target_"]]
        assert model["name"] == path.stem.split("_")[1] and model["name"] in table, path
        sizes = set().union(*(set(t) for t in table.values()))
        assert all(model[k] is None for k in sizes if k in model), (path, model)
        assert {k for t in table.values() for k in t} - set(model) <= {"lstm"}, path  # overridable


@pytest.mark.parametrize("name", ["train", "train_ae"])
def test_optimizer_comes_from_the_optim_group(name):
    from avgen.train.skeleton import build_optimizer

    params = [torch.nn.Parameter(torch.zeros(3))]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        default = compose(name, overrides=["trainer.lr=0.004"])
        sgd = compose(name, overrides=["optim._target_=torch.optim.SGD", "~optim.betas", "+optim.momentum=0.5"])
    opt, sched = build_optimizer(params, default.trainer, instantiate(default.optim))
    assert isinstance(opt, torch.optim.AdamW) and tuple(opt.defaults["betas"]) == (0.9, 0.99)
    assert opt.defaults["lr"] == 0.004 and sched.get_last_lr()[0] < 0.004  # warmup scales the configured lr
    opt, _ = build_optimizer(params, sgd.trainer, instantiate(sgd.optim))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.5
