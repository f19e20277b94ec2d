"""FSDP2 (`fully_shard`) for large presets: each DiT block and the root sharded over the ranks, checkpoints through
torch.distributed.checkpoint (DCP). DDP stays the default; `trainer.fsdp=true` under torchrun switches to this.

A checkpoint is then two parts: `step_XXXXXXXX.dcp/` (model + optimizer shards, one file per rank, written by every
rank into a temporary directory renamed by rank 0 when all are done) and `step_XXXXXXXX.pt` (EMA, schedule, step and
every rank's RNG state), written last, so a complete .pt always has its complete .dcp beside it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from avgen.errors import MissingFileError


def shard_model(model: nn.Module, device_type: str) -> nn.Module:
    """fully_shard every block, then the root (parameters become DTensors sharded on dim 0)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device_type, (dist.get_world_size(),))
    for block in model.blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def full(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value (all-gathered); plain tensors pass through."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def set_gradient_sync(model: nn.Module, enabled: bool) -> None:
    """FSDP2's no_sync: skip the reduce-scatter on all but the last micro-batch."""
    model.set_requires_gradient_sync(enabled)


def save_shards(directory: Path, step: int, model: nn.Module, opt) -> None:
    """Every rank writes its shards of model and optimizer state to step_XXXXXXXX.dcp (atomically renamed)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    final = directory / f"step_{step:08d}.dcp"
    tmp = directory / f".step_{step:08d}.dcp.tmp"
    if dist.get_rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    dist.barrier()
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    dcp.save(state, checkpoint_id=str(tmp))
    dist.barrier()
    if dist.get_rank() == 0:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    dist.barrier()


def load_shards(pt_path: Path, model: nn.Module, opt) -> None:
    """Read the .dcp beside a step_XXXXXXXX.pt back into the sharded model and optimizer."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    shards = pt_path.with_suffix(".dcp")
    if not shards.is_dir():
        raise MissingFileError(f"{pt_path} is an FSDP checkpoint but {shards.name} is missing beside it")
    state = {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}
    dcp.load(state, checkpoint_id=str(shards))
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, opt, state["optim"])


def prune_shards(directory: Path, keep_steps: set[int]) -> None:
    """Remove .dcp directories whose .pt was pruned (rank 0)."""
    for d in directory.glob("step_*.dcp"):
        if int(d.stem.split("_")[1]) not in keep_steps:
            shutil.rmtree(d, ignore_errors=True)
