"""avgen-train-ae: train a video or audio autoencoder with Hydra configs (avgen/conf/train_ae.yaml, avgen/conf/ae/).

avgen-train-ae ae=video_tiny out_dir=runs/video_ae                                  # rerun the same command to resume
torchrun --standalone --nproc_per_node 2 -m avgen.cli.train_ae ae=video_tiny ...    # DDP (gloo on CPU, NCCL on CUDA)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from avgen.autoencoders.base import Autoencoder
from avgen.cli.common import CONFIG_DIR, check_resume, friendly_errors, record_run_config, run_dir
from avgen.data import AVWorld
from avgen.train.ae_loop import AERoundTrip, AETrainConfig, check_config, train_autoencoder
from avgen.train.checkpoint import seed_all
from avgen.train.distributed import DistInfo, setup, teardown


def _validator(cfg: DictConfig) -> AERoundTrip | None:
    """The round-trip report on validation.clips held-out avworld clips (the held-out seed of tools/eval_ae.py)."""
    if not cfg.validation.clips:
        return None
    c = cfg.clip
    world = AVWorld(cfg.validation.seed, duration=c.duration, fps=c.fps, size=c.size, sample_rate=c.sample_rate)
    n = int(cfg.validation.clips)
    return AERoundTrip([world[i] for i in range(n)], [world.object_masks(i) for i in range(n)], 1.0 / c.fps)


def _init_from(ae: Autoencoder, directory: str, fresh: Sequence[str] = ()) -> None:
    """Start from a saved AE (an export dir: config.json + model.safetensors) of the same class and config; with
    `fresh` (init_fresh=[decoder]) the named top-level modules keep their new initialisation (e.g. another decoder
    type) and the config may differ, but every other tensor must be in the saved AE with the same shape."""
    from avgen.autoencoders import io
    from avgen.errors import InputError

    saved = io.load(directory)
    if type(saved) is not type(ae) or (not fresh and dict(saved.config) != dict(ae.config)):
        raise InputError(f"init_from={directory} is a {saved.kind} with {dict(saved.config)}, but ae= builds a "
                         f"{ae.kind} with {dict(ae.config)}; pick the ae config it was trained with")  # fmt: skip
    if not fresh:
        ae.load_state_dict(saved.state_dict())
        print(f"init_from={directory}: starting from its weights")
        return
    modules = dict(ae.named_children())
    if unknown := [f for f in fresh if f not in modules]:
        raise InputError(
            f"init_fresh={list(fresh)}: {unknown} are not modules of {ae.kind}; choose from {sorted(modules)}"
        )
    theirs = saved.state_dict()
    kept = {k: v for k, v in ae.state_dict().items() if k.split(".")[0] not in fresh}
    if bad := [k for k, v in kept.items() if k not in theirs or theirs[k].shape != v.shape]:
        raise InputError(f"init_from={directory} lacks or reshapes {bad[:4]} outside init_fresh={list(fresh)}; "
                         f"add their modules to init_fresh or pick the ae config it was trained with")  # fmt: skip
    ae.load_state_dict({k: theirs[k] for k in kept}, strict=False)
    print(f"init_from={directory}: {len(kept)} tensors from its weights, {list(fresh)} start fresh")


@dataclass
class Prepared:
    """Everything an AE training run is built from, after every start-up check has passed."""

    ae: Autoencoder
    info: DistInfo
    loss_fn: object
    data: object
    trainer: AETrainConfig
    out: Path
    validate: AERoundTrip | None
    optimizer: object


def prepare(cfg: DictConfig) -> Prepared:
    """Build a run from a composed config (the process group too, under torchrun); tools/benchmarks/trainers.py
    times the trainer through this."""
    OmegaConf.resolve(cfg)
    trainer = AETrainConfig(**OmegaConf.to_container(cfg.trainer))
    info = setup(trainer.device)
    check_config(trainer, info.world_size)  # before anything slow
    out = run_dir(cfg)
    check_resume(cfg, out)
    seed_all(trainer.seed)  # the same initial weights for the same command, on every rank
    ae = instantiate(cfg.ae.model)
    if cfg.get("init_from"):
        _init_from(ae, cfg.init_from, cfg.get("init_fresh") or ())  # on a resume the checkpoint's weights replace these
    loss_fn = instantiate(cfg.ae.loss)
    data = instantiate(cfg.data)
    if info.is_main:
        record_run_config(cfg, out)
        n_params = sum(p.numel() for p in ae.parameters())
        print(f"training {cfg.ae.name} ({ae.kind}, {n_params / 1e6:.2f} M parameters, {ae.geometry}); "
              f"{info.world_size} rank(s) -> {out}")  # fmt: skip
    validate = _validator(cfg) if trainer.val_every and info.is_main else None  # rank 0 validates
    return Prepared(ae, info, loss_fn, data, trainer, out, validate, instantiate(cfg.optim))


def run(cfg: DictConfig) -> dict:
    """Build everything from a composed config and train; returns the last logged metrics."""
    r = prepare(cfg)
    last = train_autoencoder(r.ae, r.loss_fn, r.data, r.trainer, r.out, optimizer=r.optimizer, validate=r.validate,
                             info=r.info)  # fmt: skip
    if r.info.is_main:
        said = f"loss {last['loss']:.4f}" if "loss" in last else f"already at trainer.steps={r.trainer.steps}"
        print(f"done: {said}; exported to {r.out}/export")
    teardown()
    return last


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train_ae")
@friendly_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
