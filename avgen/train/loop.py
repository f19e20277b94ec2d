"""Training the joint DiT: deterministic batches, AdamW + warmup/cosine, accumulation, EMA, DDP, exact resume.

Device, dtype and autocast are decided once here (bf16 autocast on CUDA, fp32 on CPU). Every random choice is a
pure function of (seed, step, global sample index): the data order from (seed, epoch), the noise, noise levels, task
and caption dropout from the objective's per-sample generators. Each rank takes a contiguous slice of the global
batch, each micro-batch's loss is weighted by its share, and DDP averages gradients over ranks, so the update is the
gradient of the global per-sample mean however the batch is split across ranks and micro-batches.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from avgen.errors import InputError
from avgen.train import sharding
from avgen.train.batches import batch_indices
from avgen.train.checkpoint import (
    capture_rng_state,
    clean_run_dir,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from avgen.train.checks import check_config
from avgen.train.distributed import DistInfo, all_gather_objects, all_mean, autocast_for, barrier, count_distinct
from avgen.train.ema import EMA
from avgen.train.logging import MetricsLogger, rank_log
from avgen.train.skeleton import (
    OptimizerFactory,
    build_optimizer,
    clip_gradients,
    compile_in_place,
    due,
    step_loop,
    stop_if_not_finite,
)
from avgen.train.stream import step_stream

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    steps: int = 20000
    batch_size: int = 16  # global: summed over ranks and micro-batches
    grad_accum: int = 1  # micro-batches per rank per step
    fsdp: bool = False  # under torchrun: FSDP2 fully_shard instead of DDP (large presets)
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 500
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    ckpt_every: int = 500
    keep: int = 3
    log_every: int = 20
    val_every: int = 0  # 0: no validation
    seed: int = 0
    device: str = "cpu"
    progress: bool = True
    compile: bool = False  # torch.compile the DiT's forward (same maths; pays off after its compile time)
    workers: int = 0  # data-loader processes making the next steps' micro-batches while the model trains (0: here)


def _local_info(cfg: TrainConfig) -> DistInfo:
    return DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device(cfg.device))


def train_dit(model, objective, batcher, n_items: int, cfg: TrainConfig, out_dir: str | Path, validate=None,
              info: DistInfo | None = None, optimizer: OptimizerFactory | None = None) -> dict:  # fmt: skip
    """Train (or resume) the DiT; checkpoints in out_dir/checkpoints, metrics in out_dir/metrics.jsonl (rank 0).
    validate(ema_model, step) -> metrics runs on rank 0 every cfg.val_every steps (see avgen.train.validate);
    optimizer: params -> optimizer (the optim config group), AdamW from cfg when None."""
    info = info or _local_info(cfg)
    check_config(cfg, info.world_size)
    out = Path(out_dir)
    model.to(info.device).train()
    ema = EMA(model, cfg.ema_decay)  # an eager copy: validation calls it with other shapes
    compile_in_place(model, cfg.compile)
    net, fsdp = _parallel(model, cfg, info)
    if fsdp:
        ema.shard(model)  # from here each rank averages only its own shards (see EMA)
    opt, sched = build_optimizer(model.parameters(), cfg, optimizer)
    if info.is_main:
        clean_run_dir(out)
    barrier()
    start = _resume(out, info, model, ema, opt, sched, fsdp)
    logger = MetricsLogger(out, enabled=info.is_main)
    local_sums: dict = {}
    data = getattr(batcher, "dataset", None)  # on the fly: the dataset whose unreadable files are counted
    make = StepBatches(batcher.on_cpu() if cfg.workers else batcher, n_items, cfg, info)

    def one_step(step: int) -> dict:
        opt.zero_grad(set_to_none=True)
        batches = next_batches(step)  # this rank's micro-batches, made here or by cfg.workers processes
        local_sums.update(_accumulate(net, model, objective, batches, batcher.layout, cfg, info, fsdp, step))
        loss = all_mean(torch.tensor(local_sums["loss"], device=info.device))
        stop_if_not_finite(loss, "loss", step, out, info.device)
        norm = clip_gradients(model.parameters(), cfg.grad_clip, step, out, info.device)
        opt.step()
        sched.step()
        ema.update(model)
        means = {k: float(all_mean(torch.tensor(v, device=info.device))) for k, v in local_sums.items()}
        return means | {"grad_norm": norm, "lr": sched.get_last_lr()[0]}

    def after(step: int, last: dict) -> None:
        if due(step, cfg.log_every, cfg.steps):
            logger.log(step, last | _data_report(data))
            rank_log(out, info, step, local_sums)
        if validate is not None and cfg.val_every and step % cfg.val_every == 0:
            with ema.gathered(keep=info.is_main) as averaged:  # under FSDP every rank takes part in the gather
                if info.is_main:
                    logger.log(step, validate(averaged, step))
            barrier()
        if due(step, cfg.ckpt_every, cfg.steps):
            _save(out, info, cfg, step, model, ema, opt, sched, fsdp)

    with step_stream(make, start, cfg.steps, cfg.workers, data) as next_batches:
        last = step_loop(cfg.steps, start, "train dit", cfg.progress and info.is_main, one_step, after)
    logger.close()
    ema.unshard(keep=info.is_main)  # under FSDP: the full average on rank 0 (for export), gathered by every rank
    return last | _data_report(data) | {"ema": ema}


def _parallel(model, cfg: TrainConfig, info: DistInfo):
    """(the module to call, whether FSDP2 shards it): DDP under torchrun, FSDP2 with trainer.fsdp, else the model."""
    if cfg.fsdp and info.distributed:
        sharding.shard_model(model, info.device.type)
        return model, True
    if info.distributed:
        from torch.nn.parallel import DistributedDataParallel

        # device_ids=None: inputs are already on the device (and the layout argument must not be copied). Every
        # parameter takes part in every step (the null text too, see AVDiT._text), so no unused-parameter search.
        return DistributedDataParallel(model, device_ids=None), False
    return model, False


class StepBatches:
    """step -> this rank's micro-batches of that step, [(xv, xa, text_states, mask, spans or None)] * grad_accum: the
    global batch batch_indices(step, ...), the rank's contiguous slice of it, then batcher(indices, step, seed) per
    micro-batch. A pure function of the step, so that data-loader workers can make it (see avgen.train.stream)."""

    def __init__(self, batcher, n_items: int, cfg: TrainConfig, info: DistInfo) -> None:
        self.batcher, self.n_items, self.cfg, self.rank = batcher, n_items, cfg, info.rank
        self.local, self.micro = _split(cfg, info)

    def __call__(self, step: int) -> list[tuple[torch.Tensor, ...]]:
        lo = self.rank * self.local
        mine = batch_indices(step, self.cfg.batch_size, self.n_items, self.cfg.seed)[lo : lo + self.local]
        return [self.batcher(mine[a * self.micro : (a + 1) * self.micro], step=step, seed=self.cfg.seed)
                for a in range(self.cfg.grad_accum)]  # fmt: skip


def _split(cfg: TrainConfig, info: DistInfo) -> tuple[int, int]:
    """(samples per rank per step, samples per micro-batch)."""
    local = cfg.batch_size // info.world_size
    return local, local // cfg.grad_accum


def _accumulate(net, model, objective, batches: list, layout, cfg: TrainConfig, info: DistInfo, fsdp: bool,
                step: int) -> dict:  # fmt: skip
    """Forward and backward of this rank's micro-batches of one step (StepBatches, moved to the device here);
    returns the local loss terms (their means)."""
    local, micro = _split(cfg, info)
    sums = {"loss": 0.0, "loss_video": 0.0, "loss_audio": 0.0}
    for a, batch in enumerate(batches):
        xv, xa, text, mask, spans = (None if x is None else x.to(info.device) for x in batch)
        first = info.rank * local + a * micro  # global index of this micro-batch's first sample
        seeds = [(cfg.seed, step, first + j) for j in range(micro)]
        last_micro = a == cfg.grad_accum - 1
        sync = net.no_sync() if info.distributed and not fsdp and not last_micro else contextlib.nullcontext()
        if fsdp:
            sharding.set_gradient_sync(model, last_micro)
        with sync:  # one no_sync() around forward and backward (a no_sync context cannot be entered twice)
            with autocast_for(info.device):
                terms = objective(net, xv, xa, text, mask, layout, seeds, text_spans=spans)
            (terms["loss"] * (micro / local)).backward()
        for k in sums:
            sums[k] += float(terms[k].detach()) * micro / local
    return sums


def _data_report(data) -> dict[str, float]:
    """{"data/skipped_files": unreadable files skipped so far on any rank} for a dataset that skips them (MediaFolder),
    else {}. A collective under DDP: every rank calls it at the same steps."""
    if not hasattr(data, "skipped"):
        return {}
    return {"data/skipped_files": count_distinct(data.skipped)}


def _save(out: Path, info: DistInfo, cfg: TrainConfig, step: int, model, ema, opt, sched, fsdp: bool) -> None:
    """Rank 0 writes the checkpoint with every rank's RNG state; the others wait until it is complete. Under FSDP
    every rank first writes its model and optimizer shards (DCP) and the .pt holds the rest (the EMA gathered full)."""
    rng = capture_rng_state()
    if fsdp:
        sharding.save_shards(out / "checkpoints", step, model, opt)
    ranks = all_gather_objects(rng)
    ema_state = ema.state_dict(keep=info.is_main)  # under FSDP a gather every rank takes part in
    if info.is_main:
        state = {"ema": ema_state, "scheduler": sched.state_dict(), "step": step, "rng": rng,
                 "rng_ranks": ranks, "data_position": step * cfg.batch_size, "world_size": info.world_size,
                 "fsdp": fsdp, "config": asdict(cfg)}  # fmt: skip
        if not fsdp:
            state |= {"model": model.state_dict(), "optimizer": opt.state_dict()}
        save_checkpoint(out / "checkpoints", step, state, keep=cfg.keep)
        if fsdp:
            sharding.prune_shards(out / "checkpoints", {int(p.stem[5:]) for p in list_checkpoints(out / "checkpoints")})
    barrier()


def _resume(out: Path, info: DistInfo, model, ema, opt, sched, fsdp: bool) -> int:
    found = latest_checkpoint(out / "checkpoints")
    if found is None:
        return 0
    state = load_checkpoint(found, map_location=info.device)
    if bool(state.get("fsdp", False)) != fsdp:
        raise InputError(
            f"{found} was written with trainer.fsdp={state.get('fsdp', False)}: resume with the same setting"
        )
    if fsdp:
        sharding.load_shards(found, model, opt)
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
    ema.load_state_dict(state["ema"])
    sched.load_state_dict(state["scheduler"])
    ranks = state.get("rng_ranks") or [state["rng"]]
    restore_rng_state(ranks[info.rank] if len(ranks) == info.world_size else state["rng"])
    if info.is_main:
        log.info("resumed from %s at step %d", found, int(state["step"]))
    return int(state["step"])
