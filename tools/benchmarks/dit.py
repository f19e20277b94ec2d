"""Benchmark: the machine's fp32 matmul peak, and DiT training throughput for the tiny preset as a fraction of it.

FLOPs of one training step = 6 x (matmul parameters applied per token, modulation excluded) x tokens
+ 6 x (text key/value projection parameters) x text tokens + attention (fwd 4 l^2 d per layer for self-attention and
4 l s d for cross-attention, x3 for forward + backward).
"""

from __future__ import annotations

import time
from fractions import Fraction

import torch
from torch import nn

from avgen.autoencoders.base import AEGeometry
from avgen.models.dit import build_dit
from avgen.tokens import AVTokenLayout


def matmul_peak(quick: bool) -> tuple[float, int]:
    best, best_n = 0.0, 0
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps = 2 if quick or n == 4096 else 5
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        rate = 2 * n**3 * reps / (time.perf_counter() - t0)
        if rate > best:
            best, best_n = rate, n
    return best, best_n


def step_flops(model, layout, batch: int, text_tokens: int) -> float:
    d = model.config["width"]
    per_token, kv = 0, 0
    for name, m in model.named_modules():
        if not isinstance(m, nn.Linear) or ".ada" in name or name.startswith("t_embed") or name.endswith("ada.1"):
            continue
        if name.endswith("cross.kv"):
            kv += m.weight.numel()
        elif name == "in_video" or name.endswith("out_video.linear"):
            per_token += m.weight.numel() * layout.lv / layout.l
        elif name == "in_audio" or name.endswith("out_audio.linear"):
            per_token += m.weight.numel() * layout.la / layout.l
        else:
            per_token += m.weight.numel()
    depth, l, s = model.config["depth"], layout.l, text_tokens
    attention = 3 * depth * (4 * l * l * d + 4 * l * s * d)
    return batch * (6 * per_token * l + 6 * kv * s + attention)


def run(quick: bool = False) -> list[dict]:
    torch.manual_seed(0)
    peak, n = matmul_peak(quick)
    video, audio = AEGeometry(Fraction(16), 4, 8, 16), AEGeometry(Fraction(16000), 400, 1, 32)
    layout = AVTokenLayout.from_geometry(video, audio, 2.0, (64, 64), audio_patch=2)
    model = build_dit("tiny", layout.pv, layout.pa).train()
    batch, s = 16, 16
    xv, xa = torch.randn(batch, layout.lv, layout.pv), torch.randn(batch, layout.la, layout.pa)
    tv = torch.rand(batch, 1).expand(-1, layout.lv).contiguous()
    ta = torch.rand(batch, 1).expand(-1, layout.la).contiguous()
    text, mask = torch.randn(batch, s, 384), torch.ones(batch, s, dtype=torch.bool)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(with_opt: bool) -> None:
        vv, va = model(xv, xa, tv, ta, text, mask, layout)
        ((vv - xv).square().mean() + (va - xa).square().mean()).backward()
        if with_opt:
            opt.step()
        opt.zero_grad(set_to_none=True)

    rows = [{"section": "dit", "metric": "fp32 matmul peak", "value": peak / 1e9, "unit": "GFLOP/s",
             "note": f"best of n in 1024/2048/4096 (n={n}), {torch.get_num_threads()} threads"}]  # fmt: skip
    flops = step_flops(model, layout, batch, s)
    params = sum(p.numel() for p in model.parameters())
    for with_opt, label in ((False, "fwd+bwd"), (True, "fwd+bwd+AdamW")):
        step(with_opt)
        reps = 2 if quick else 6
        t0 = time.perf_counter()
        for _ in range(reps):
            step(with_opt)
        dt = (time.perf_counter() - t0) / reps
        tokens = batch * layout.l / dt
        rows.append({"section": "dit", "metric": f"tiny DiT {label}", "value": tokens, "unit": "tokens/s",
                     "note": f"{flops / dt / 1e9:.1f} GFLOP/s = {100 * flops / dt / peak:.0f}% of peak; "
                             f"{params / 1e6:.1f} M params, {layout.l} tokens x batch {batch}; "
                             f"{tokens / layout.l * 2.0:.1f} s of media/s"})  # fmt: skip
    return rows
