"""The skeleton both trainers share: optimizer and schedule, the step loop with its cadence, the guards that stop a
run whose loss or gradient is not finite. train_dit (loop.py) and train_autoencoder (ae_loop.py) fill in one step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from avgen.errors import DivergedError
from avgen.train import sharding
from avgen.train.distributed import any_rank
from avgen.train.schedule import lr_factor

OptimizerFactory = Callable[..., torch.optim.Optimizer]  # params -> optimizer (a config's `_partial_: true`)


def build_optimizer(params, cfg, optimizer: OptimizerFactory | None = None):
    """(optimizer, warmup + cosine schedule). optimizer: from the optim config group; None: AdamW from cfg."""
    params = list(params)
    if optimizer is None:
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99), fused=True)
    else:
        opt = optimizer(params)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))


def compile_in_place(model: torch.nn.Module, enabled: bool) -> None:
    """trainer.compile: torch.compile the module's forward in place (inductor; on a CPU it writes and builds C++).
    The state_dict keeps its keys, so checkpoints, resume and export are the same as eager; the first steps pay the
    compile time (and one recompile, with that size dynamic, when the number of distinct noise levels in a batch first
    changes: dynamic=False would recompile for every count). Two modules sharing one forward (both AEs in one
    process) also make shapes dynamic: tools/benchmarks/trainers.py resets dynamo between them."""
    if enabled:
        model.compile()


def stop_if_not_finite(value: torch.Tensor, what: str, step: int, out: Path, device) -> None:
    """Every rank stops together when `value` (a loss, a gradient norm) is not finite on any rank."""
    if any_rank(not bool(torch.isfinite(value)), device):
        raise DivergedError(f"non-finite {what} at step {step}; the last good checkpoint is in {out / 'checkpoints'}")


def clip_gradients(params, max_norm: float, step: int, out: Path, device) -> float:
    """Clip to `max_norm` and return the total norm before clipping; stop on a non-finite one."""
    norm = sharding.full(torch.nn.utils.clip_grad_norm_(params, max_norm))
    stop_if_not_finite(norm, "gradient", step, out, device)
    return float(norm)


def due(step: int, every: int, steps: int) -> bool:
    """Logging / checkpoint cadence: every `every` steps and at the last one."""
    return step % every == 0 or step == steps


def step_loop(steps: int, start: int, desc: str, progress: bool, one_step: Callable[[int], dict],
              after: Callable[[int, dict], None]) -> dict:  # fmt: skip
    """Run one_step(step) -> metrics from `start` to `steps`, then after(step + 1, metrics); returns the last
    metrics. The progress bar is closed on errors too, so an error line is the last one printed."""
    last: dict = {}
    with tqdm(total=steps, initial=start, disable=not progress, desc=desc, dynamic_ncols=True) as bar:
        for step in range(start, steps):
            last = one_step(step)
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            after(step + 1, last)
    return last
