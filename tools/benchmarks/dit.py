"""Benchmark: the machine's fp32 matmul peak, and training throughput of the tiny DiT on cached-latent-shaped inputs
(168 tokens: 128 video + 40 audio of dim 64, batch 16, text states (16, 32, 384)), fwd + bwd + AdamW, as tokens/s and
as a fraction of the peak. The fraction is the median over rounds that each time one matmul at the peak's size and
one training step back to back, so outside load shifts both. A profiled step splits the time into matmuls, attention
and the rest (elementwise, norms, copies, optimizer): the rest is what keeps a d = 256 model from the peak on a CPU.
Its work grows with l * d per layer against l * d^2 for the matmuls, so a full run also times preset small (d = 512).
"""

from __future__ import annotations

import statistics
import time

import torch

from avgen.models.dit import build_dit
from tools.benchmarks.common import (
    FLOP_METHOD,
    MEMORY_METHOD,
    adamw,
    best_time,
    count_flops,
    default_layout,
    dit_batch,
    dit_train_step,
    interleaved,
    matmul_fn,
    matmul_peak,
    memory_row,
    peak_rss,
    preset_sync,
    threads_note,
)

SECTION = "dit"
NOTES = [FLOP_METHOD + ".", MEMORY_METHOD + "."]
BATCH = 16
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")


def row(metric: str, value, unit: str, note: str) -> dict:
    return {"section": SECTION, "metric": metric, "value": value, "unit": unit, "note": note}


def time_split(step) -> dict[str, float]:
    """Shares of one step's self CPU time: matmuls, attention kernels, everything else."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    shares = {"matmul": 0.0, "attention": 0.0, "other": 0.0}
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        kind = "matmul" if event.key in GEMM_OPS else "attention" if "attention" in event.key else "other"
        shares[kind] += event.self_cpu_time_total
    total = sum(shares.values()) or 1.0
    return {k: v / total for k, v in shares.items()}


def run(quick: bool = False) -> list[dict]:
    torch.manual_seed(0)
    threads = threads_note()
    peak, n = matmul_peak(quick)
    rows = [row("fp32 matmul peak", peak / 1e9, "GFLOP/s", f"best of square sizes 1024-{2048 if quick else 4096} "
                f"(n={n}), {threads}")]  # fmt: skip

    layout = default_layout()
    mm, mm_flops = matmul_fn(n)
    with peak_rss() as mem:  # from before the model is built to after two steps: what training this model costs
        model, step, flops = training("tiny", layout)
        step()
    rounds = 3 if quick else 10
    times = interleaved({"matmul": mm, "step": step}, rounds=rounds)
    fractions = [(flops / s) / (mm_flops / m) for s, m in zip(times["step"], times["matmul"], strict=True)]
    best = min(times["step"])
    tokens = BATCH * layout.l / best
    params = sum(p.numel() for p in model.parameters())
    shape = f"{layout.l} tokens ({layout.lv} video + {layout.la} audio, dim {layout.pv}) x batch {BATCH}"
    split = time_split(step)
    media = tokens / layout.l * 2.0
    rows += [
        row("tiny DiT train (fwd+bwd+AdamW)", tokens, "tokens/s", f"{shape}, text (b, 32, 384); {params / 1e6:.2f} M "
            f"params; {media:.1f} s of media/s; best of {rounds} steps, {threads}"),
        row("tiny DiT train achieved", flops / best / 1e9, "GFLOP/s", f"{flops / 1e9:.1f} GFLOP per step (FLOPs: "
            "FlopCounterMode, see below)"),
        row("tiny DiT train / matmul peak", 100 * statistics.median(fractions), "%", f"median of {rounds} interleaved "
            f"rounds (min {100 * min(fractions):.0f}, max {100 * max(fractions):.0f}); target >= 70"),
        row("tiny DiT step time split", 100 * split["matmul"], "% matmul", f"attention {100 * split['attention']:.0f} "
            f"%, other (elementwise, norms, copies, AdamW) {100 * split['other']:.0f} %; self CPU time of the aten ops "
            "of one profiled step"),
        memory_row(SECTION, "tiny DiT train", mem, f"model + AdamW state + activations, batch {BATCH}"),
        row("tiny DiT forward (no grad)", inference_tokens(model, layout, quick), "tokens/s",
            f"eval mode, batch {BATCH}, {threads}"),
    ]  # fmt: skip
    rows += compiled_rows(layout, mm, mm_flops, flops, rounds)
    if not quick:  # the same at width 512 (preset small): the share of non-matmul work falls as the width grows
        del model, step
        _, step, flops = training("small", layout)
        times = interleaved({"matmul": mm, "step": step}, rounds=3)
        fractions = [(flops / s) / (mm_flops / m) for s, m in zip(times["step"], times["matmul"], strict=True)]
        note = "preset small (width 512, depth 12, no checkpointing), same inputs; median of 3 interleaved rounds"
        rows.append(row("small DiT train / matmul peak", 100 * statistics.median(fractions), "%", note))
    return rows


def compiled_rows(layout, mm, mm_flops: float, flops: float, rounds: int) -> list[dict]:
    """The tiny DiT under trainer.compile=true (torch.compile, inductor): compile time, and the eager step's FLOPs
    (the same maths) over the compiled step's time, as a share of the peak, with the speed-up over eager."""
    t0 = time.perf_counter()
    _, step, _ = training("tiny", layout, compiled=True, count=False)
    step()
    step()  # the recompile for a new number of distinct noise levels falls here
    compile_s = time.perf_counter() - t0
    _, eager, _ = training("tiny", layout, count=False)
    times = interleaved({"matmul": mm, "compiled": step, "eager": eager}, rounds=rounds)
    fractions = [(flops / s) / (mm_flops / m) for s, m in zip(times["compiled"], times["matmul"], strict=True)]
    speedup = [e / c for e, c in zip(times["eager"], times["compiled"], strict=True)]
    return [
        row("tiny DiT train, torch.compile / matmul peak", 100 * statistics.median(fractions), "%", f"median of "
            f"{rounds} interleaved rounds (min {100 * min(fractions):.0f}, max {100 * max(fractions):.0f}); the eager "
            "step's FLOPs; target >= 70"),
        row("tiny DiT train, torch.compile speed-up", statistics.median(speedup), "x", f"over eager, median of "
            f"{rounds} interleaved rounds (min {min(speedup):.2f}, max {max(speedup):.2f})"),
        row("tiny DiT compile time", compile_s, "s", "first two steps, inductor's C++ build included (cold cache)"),
    ]  # fmt: skip


def training(preset: str, layout, compiled: bool = False, count: bool = True):
    """A DiT of `preset` with non-zero weights, its training step on a batch of BATCH, and that step's FLOPs
    (None with count=False)."""
    model = build_dit(preset, layout.pv, layout.pa, layout.per_window, grad_checkpointing=False,
                      sync=preset_sync()).train()  # fmt: skip
    with torch.no_grad():  # adaLN-Zero starts with zero branches; speed must not depend on that
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    if compiled:
        model.compile()  # as trainer.compile=true does (avgen.train.skeleton.compile_in_place)
    step = dit_train_step(model, layout, dit_batch(layout, BATCH), adamw(model))
    return model, step, count_flops(step) if count else None


def inference_tokens(model, layout, quick: bool) -> float:
    batch = dit_batch(layout, BATCH, seed=1)
    model.eval()
    with torch.no_grad():
        args = (batch["xv"], batch["xa"], batch["tv"], batch["ta"], batch["text"], batch["mask"], layout)
        t = best_time(lambda: model(*args), repeats=2 if quick else 5)
    model.train()
    return BATCH * layout.l / t


if __name__ == "__main__":
    for r in run(quick=True):
        print(r)
