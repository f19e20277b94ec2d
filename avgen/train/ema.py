"""Exponential moving average of a model's parameters: a full eager copy, or under FSDP2 only this rank's shards."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from avgen.errors import InputError


class EMA:
    """Shadow copy of a model whose parameters track `decay * ema + (1 - decay) * param` after each update.

    With `warmup=True` the effective decay is min(decay, (1 + step) / (10 + step)), so early averages are not
    dominated by the random initialisation. Buffers (e.g. latent stats) are copied, not averaged.

    What it holds: unsharded, `model` is an eager copy of the model (its dtype and device), averaged in place. Once
    sharded (`shard(model)` after FSDP2's fully_shard, or the first update from DTensor parameters) each rank holds
    fp32 copies of only its own local shards (about 1/world of the parameters), the buffers (replicated, as in the
    model) and a storage-free template on the meta device; `model` is None and the updates need no communication.
    The full model then exists only inside `gathered()` and after `unshard()`, and `state_dict()` gathers full
    tensors, so checkpoints have the unsharded format and load under any world size. Those three are collectives
    under FSDP: every rank calls them, `keep` says where the result is kept.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise InputError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.step = 0
        self.model: nn.Module | None = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
        self._shards: list[torch.Tensor] | None = None  # fp32 DTensors laid out like the sharded model's parameters
        self._buffers: list[torch.Tensor] = []  # while sharded: the buffers, in template.buffers() order
        self._template: nn.Module | None = None  # while sharded: the module's structure on the meta device
        self._device = torch.device("cpu")  # while sharded: where gathered models are built

    @property
    def sharded(self) -> bool:
        return self._shards is not None

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.step) / (10 + self.step))

    @torch.no_grad()
    def shard(self, model: nn.Module) -> None:
        """Keep only this rank's shards from now on, laid out like the FSDP2-sharded `model`'s DTensor parameters
        (the model this EMA was built from); the full copy is released. A local split: no communication."""
        if self.sharded:
            return
        src = list(unwrap(model).parameters())
        if not all(_is_dtensor(p) for p in src):
            raise ValueError("EMA.shard needs a model whose parameters are all DTensors (FSDP2 fully_shard)")
        full = list(self.model.parameters())
        self._device = next(iter(full), torch.empty(0)).device
        self._shards = [_shard_like(e, p) for e, p in zip(full, src, strict=True)]
        self._buffers = list(self.model.buffers())  # .to("meta") below swaps in new buffers: these survive
        self._template = self.model.to("meta")
        self.model = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        src = unwrap(model)
        if not self.sharded and any(_is_dtensor(p) for p in src.parameters()):
            self.shard(src)
        if self.sharded:  # each rank averages its own shards, in fp32
            ema_params = [s.to_local() for s in self._shards]  # under no_grad: the shards' own storage
            new_params = [p.to_local().detach().to(torch.float32) for p in src.parameters()]
            ema_buffers = self._buffers
        else:
            ema_params = list(self.model.parameters())
            new_params = [p.detach().to(e.dtype) for p, e in zip(src.parameters(), ema_params, strict=True)]
            ema_buffers = list(self.model.buffers())
        torch._foreach_lerp_(ema_params, new_params, 1.0 - decay)
        for b_ema, b in zip(ema_buffers, src.buffers(), strict=True):
            b_ema.copy_(b)
        self.step += 1

    @contextlib.contextmanager
    def gathered(self, keep: bool = True) -> Iterator[nn.Module | None]:
        """The averaged model for validation: `model` itself when unsharded; under FSDP a full eager copy built where
        `keep` (None elsewhere) whose storage is released on exit, whoever still refers to it."""
        if not self.sharded:
            yield self.model
            return
        full = self._gather_model(keep)
        try:
            yield full
        finally:
            if full is not None:
                full.to("meta")

    def unshard(self, keep: bool = True) -> None:
        """Gather the full average into `model` where `keep` and drop the shards (end of training, for export); on
        the other ranks `model` stays None and this EMA is done. Nothing to do when unsharded."""
        if self.sharded:
            self.model = self._gather_model(keep)
            self._shards, self._buffers, self._template = None, [], None

    def state_dict(self, keep: bool = True) -> dict:
        """{"decay", "step", "model": the averaged module's state_dict}. Under FSDP "model" holds the gathered full
        tensors on the CPU where `keep` and is empty elsewhere."""
        if not self.sharded:
            model = self.model.state_dict()
        else:
            params = [_full(s, t.dtype, keep) for s, t in zip(self._shards, self._template.parameters(), strict=True)]
            values = dict(zip(map(id, self._template.parameters()), params, strict=True))
            values |= {id(t): b.detach().cpu() for t, b in zip(self._template.buffers(), self._buffers, strict=True)}
            slots = self._template.state_dict(keep_vars=True)
            model = {k: values[id(t)] for k, t in slots.items()} if keep else {}
        return {"decay": self.decay, "step": self.step, "model": model}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Full tensors in, as state_dict() writes them; while sharded each rank keeps its own shards of them."""
        self.decay = float(state["decay"])
        self.step = int(state["step"])
        if not self.sharded:
            self.model.load_state_dict(state["model"])
            return
        slots = self._template.state_dict(keep_vars=True)
        _check_keys(slots, state["model"])
        where = {id(t): i for i, t in enumerate(self._template.parameters())}
        buffers = {id(t): b for t, b in zip(self._template.buffers(), self._buffers, strict=True)}
        for name, t in slots.items():
            value = state["model"][name].to(self._device)
            if id(t) in where:
                self._shards[where[id(t)]] = _shard_like(value, self._shards[where[id(t)]])
            else:
                buffers[id(t)].copy_(value)

    def held_bytes(self) -> int:
        """Bytes of averaged parameters and buffers this rank stores (its shards only, once sharded)."""
        if self.sharded:
            tensors = [s.to_local() for s in self._shards] + self._buffers
        else:
            tensors = list(self.model.parameters()) + list(self.model.buffers())
        return sum(t.numel() * t.element_size() for t in tensors)

    @torch.no_grad()
    def _gather_model(self, keep: bool) -> nn.Module | None:
        """A full eager copy of the average where `keep` (None elsewhere), filled one gathered shard at a time."""
        model = copy.deepcopy(self._template).to_empty(device=self._device) if keep else None
        targets = list(model.parameters()) if keep else [None] * len(self._shards)
        for s, t in zip(self._shards, targets, strict=True):
            value = s.full_tensor()  # a collective: every rank gathers every shard
            if t is not None:
                t.copy_(value)
        if model is not None:
            for b, value in zip(model.buffers(), self._buffers, strict=True):
                b.copy_(value)
        return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def _is_dtensor(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


def _shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This rank's piece of `full` as an fp32 DTensor laid out like the DTensor `like`, in its own storage."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if full.shape != like.shape:
        raise RuntimeError(f"EMA: a tensor of shape {tuple(full.shape)} cannot fill a parameter of {tuple(like.shape)}")
    piece = distribute_tensor(full.detach(), like.device_mesh, like.placements, src_data_rank=None).to_local()
    local = piece.to(torch.float32, copy=True)  # a copy: the split is a view that would keep `full` alive
    return DTensor.from_local(local, like.device_mesh, like.placements, run_check=False, shape=like.shape,
                              stride=like.stride())  # fmt: skip


def _full(shard: torch.Tensor, dtype: torch.dtype, keep: bool) -> torch.Tensor | None:
    """A shard's full tensor (a collective), on the CPU in `dtype` where `keep`, else None."""
    value = shard.full_tensor()
    return value.to(device="cpu", dtype=dtype) if keep else None


def _check_keys(slots: dict, state: dict) -> None:
    missing, unexpected = sorted(slots.keys() - state.keys()), sorted(state.keys() - slots.keys())
    if missing or unexpected:
        raise RuntimeError(f"EMA state_dict does not fit the model: missing {missing}, unexpected {unexpected}")
