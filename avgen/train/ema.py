"""Exponential moving average of a model's parameters (kept in fp32, on the model's device)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from avgen.errors import InputError


class EMA:
    """Shadow copy of a model whose parameters track `decay * ema + (1 - decay) * param` after each update.

    With `warmup=True` the effective decay is min(decay, (1 + step) / (10 + step)), so early averages are not
    dominated by the random initialisation. Buffers (e.g. latent stats) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise InputError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.step = 0
        self.model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.step) / (10 + self.step))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        src = unwrap(model)
        ema_params = list(self.model.parameters())
        # FSDP2 parameters are DTensor shards: the EMA keeps full tensors (all-gathered here)
        full = [p.full_tensor() if hasattr(p, "full_tensor") else p for p in src.parameters()]
        new_params = [p.detach().to(e.dtype) for p, e in zip(full, ema_params, strict=True)]
        torch._foreach_lerp_(ema_params, new_params, 1.0 - decay)
        for b_ema, b in zip(self.model.buffers(), src.buffers(), strict=True):
            b_ema.copy_(b)
        self.step += 1

    def state_dict(self) -> dict:
        return {"decay": self.decay, "step": self.step, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model
