"""Helpers shared by the benchmark sections: timing, interleaved A/B timing, peak memory, FLOP counting, matmul peak,
and the DiT training inputs shaped like the cached latents of the shipped default (2 s, 64x64 clips).

Interleaving is what makes ratios hold on a busy machine: the two workloads run alternately, round after round, so
a burst of outside load hits both; a ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import os
import re
import resource
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import torch

MEMORY_METHOD = (
    "Peak RSS: the resident-set high-water mark (VmHWM in /proc/self/status) of the whole benchmark process, reset "
    "before each workload through /proc/self/clear_refs (getrusage ru_maxrss, the mark since start, where that is "
    "unavailable); 'above' is the rise over the RSS before the workload, which undercounts when it reuses memory "
    "an earlier workload freed to the allocator"
)
FLOP_METHOD = (
    "FLOPs from torch.utils.flop_counter.FlopCounterMode over one step (every matmul, adaLN and timestep MLPs "
    "included, fwd + bwd; attention counted with torch's own SDPA formulas, registered here for the CPU "
    "flash-attention ops it does not count); elementwise ops, norms and the optimizer count zero"
)


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Best wall time of `repeats` calls of fn after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times of each fn, called in turn once per round (after `warmup` rounds): {name: [seconds per round]}."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(warmup + rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def median_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of num[i] / den[i]."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


# ----------------------------------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        m = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(m.group(1)) if m else None


@contextmanager
def peak_rss():
    """Yields a dict; on exit it holds 'peak_mib' (the process's resident-set high-water mark during the block) and
    'base_mib' (resident set on entry). Linux resets the mark through /proc/self/clear_refs; elsewhere the peak is
    getrusage's ru_maxrss, the high-water mark since the process started ('since_start' True)."""
    out: dict = {}
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = _status_kib("VmHWM") is not None
    except OSError:
        reset = False
    out["base_mib"] = (_status_kib("VmRSS") or 0) / 1024
    try:
        yield out
    finally:
        hwm = _status_kib("VmHWM") if reset else None
        if hwm is None:
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        out["peak_mib"] = hwm / 1024
        out["since_start"] = not reset


def memory_row(section: str, metric: str, mem: dict, note: str) -> dict:
    """A row for a peak_rss() result: the process's peak, and how far above its resident set on entry."""
    if mem["since_start"]:
        extra = "process high-water mark since start (no clear_refs here)"
    else:
        extra = f"{mem['peak_mib'] - mem['base_mib']:.0f} MiB above the {mem['base_mib']:.0f} MiB before"
    return {"section": section, "metric": metric, "value": mem["peak_mib"], "unit": "MiB peak RSS",
            "note": f"{note}; {extra}"}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# FLOPs
# ----------------------------------------------------------------------------------------------------------------------
def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of fn, FlopCounterMode with the CPU flash-attention ops added (see FLOP_METHOD)."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten

    def fwd(q, k, v, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_flop_count(q, k, v)

    def bwd(grad, q, k, v, *args, out_shape=None, **kwargs) -> int:
        return fc.sdpa_backward_flop_count(grad, q, k, v)

    custom = {}
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", fwd),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", bwd)):  # fmt: skip
        if hasattr(aten, name):
            custom[getattr(aten, name)] = formula
    counter = fc.FlopCounterMode(display=False, custom_mapping=custom)
    with counter:
        fn()
    return counter.get_total_flops()


# ----------------------------------------------------------------------------------------------------------------------
# matmul peak
# ----------------------------------------------------------------------------------------------------------------------
def matmul_fn(n: int) -> tuple[Callable[[], object], float]:
    """One fp32 n x n matmul and its FLOPs."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return (lambda: a @ b), 2.0 * n**3


def matmul_peak(quick: bool) -> tuple[float, int]:
    """Best fp32 matmul rate (FLOP/s) over square sizes, with torch's current thread count, and the best size."""
    best, best_n = 0.0, 0
    for n in (1024, 2048) if quick else (1024, 2048, 3072, 4096):
        fn, flops = matmul_fn(n)
        rate = flops / best_time(fn, repeats=2 if quick or n >= 3072 else 5)
        if rate > best:
            best, best_n = rate, n
    return best, best_n


# ----------------------------------------------------------------------------------------------------------------------
# DiT training step on cached-latent-shaped inputs
# ----------------------------------------------------------------------------------------------------------------------
def default_layout():
    """The shipped default's token layout: 2 s, 64x64, 16 fps video AE (4x time, 8x space, 16 ch), 16 kHz audio AE
    (40 Hz, 32 ch), patches (1, 2, 2) / 2: 128 video tokens of 64 + 40 audio tokens of 64 = 168 tokens."""
    from avgen.autoencoders.base import AEGeometry
    from avgen.tokens import AVTokenLayout

    video, audio = AEGeometry(Fraction(16), 4, 8, 16), AEGeometry(Fraction(16000), 400, 1, 32)
    return AVTokenLayout.from_geometry(video, audio, 2.0, (64, 64), video_patch=(1, 2, 2), audio_patch=2)


def dit_batch(layout, batch: int, text_tokens: int = 32, text_dim: int = 384, seed: int = 0) -> dict:
    """Random latent tokens, per-sample noise levels (video and audio apart, as in training) and text states with a
    padded mask, shaped like a training batch of cached latents."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(text_tokens // 4, text_tokens + 1, (batch,), generator=g)
    return {
        "xv": torch.randn(batch, layout.lv, layout.pv, generator=g),
        "xa": torch.randn(batch, layout.la, layout.pa, generator=g),
        "tv": torch.rand(batch, 1, generator=g).expand(-1, layout.lv).contiguous(),
        "ta": torch.rand(batch, 1, generator=g).expand(-1, layout.la).contiguous(),
        "text": torch.randn(batch, text_tokens, text_dim, generator=g),
        "mask": torch.arange(text_tokens)[None] < lengths[:, None],
    }


def adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    """The optimizer avgen.train.loop builds (conf/optim/adamw.yaml: fused)."""
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, betas=(0.9, 0.99), fused=True)


def train_step_fn(forward: Callable[[], torch.Tensor], opt: torch.optim.Optimizer) -> Callable[[], None]:
    """forward() -> scalar loss; returns one training step: zero grads, forward, backward, optimizer step."""

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        forward().backward()
        opt.step()

    return step


def dit_train_step(model, layout, batch: dict, opt: torch.optim.Optimizer) -> Callable[[], None]:
    def forward() -> torch.Tensor:
        vv, va = model(batch["xv"], batch["xa"], batch["tv"], batch["ta"], batch["text"], batch["mask"], layout)
        return (vv - batch["xv"]).square().mean() + (va - batch["xa"]).square().mean()

    return train_step_fn(forward, opt)


def threads_note() -> str:
    omp = os.environ.get("OMP_NUM_THREADS")
    return f"{torch.get_num_threads()} threads" + (f" (OMP_NUM_THREADS={omp})" if omp else "")


def preset_sync() -> bool:
    """Whether the default model's recipe (experiment=default_cpu over conf/model/tiny.yaml) has the sync path."""
    from omegaconf import OmegaConf

    from avgen.cli.common import CONFIG_DIR

    tiny = OmegaConf.load(f"{CONFIG_DIR}/model/tiny.yaml").get("sync")
    recipe = OmegaConf.load(f"{CONFIG_DIR}/experiment/default_cpu.yaml").get("model", {}).get("sync")
    return bool(tiny if recipe is None else recipe)
