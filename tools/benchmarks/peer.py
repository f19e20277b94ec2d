"""Benchmark: our tiny DiT against a peer of the same size, the transformer of LTX-Video (diffusers'
LTXVideoTransformer3DModel) at width 256, 4 heads of 64, depth 6, 64 latent channels in and out, 384-d captions.

Both train (fwd + bwd + AdamW, train mode) on 168 tokens x batch 16 with (16, 32, 384) text states and the same
threads. LTX sees one 8 x 3 x 7 latent grid (168 tokens, patch 1; 8 time steps like our 8 time windows) with its 3-D
rope scaled as its pipeline does for a 4x / 8x / 8x VAE at 16 fps, and one timestep per sample (its usual use; ours
modulates per token). The two steps run interleaved round by round; ours / peer is the median of the per-round
ratios. Needs diffusers: pip install avgen[vae].
"""

from __future__ import annotations

import statistics

import torch

from avgen.models.dit import PRESETS, build_dit
from tools.benchmarks.common import (
    adamw,
    count_flops,
    default_layout,
    dit_batch,
    dit_train_step,
    interleaved,
    threads_note,
    train_step_fn,
)

SECTION = "peer"
BATCH = 16
GRID = (8, 3, 7)  # frames, height, width: 168 tokens


def ltx_step(batch: dict, tiny: dict):
    """The LTX-Video transformer of the tiny preset's size and its training step on the same batch."""
    from diffusers import LTXVideoTransformer3DModel

    d, h, depth = tiny["width"], tiny["heads"], tiny["depth"]
    model = LTXVideoTransformer3DModel(
        in_channels=64, out_channels=64, caption_channels=384, cross_attention_dim=d, num_attention_heads=h,
        attention_head_dim=d // h, num_layers=depth,
    ).train()  # fmt: skip
    x = torch.cat([batch["xv"], batch["xa"]], dim=1)  # (b, 168, 64): same token count and width as ours
    frames, height, width = GRID
    if frames * height * width != x.shape[1] or x.shape[2] != 64:
        raise ValueError(f"peer grid {GRID} does not match {tuple(x.shape[1:])} tokens")
    timestep = batch["tv"][:, 0] * 1000.0  # (b,): LTX takes timesteps in [0, 1000]

    def forward() -> torch.Tensor:
        out = model(hidden_states=x, encoder_hidden_states=batch["text"], timestep=timestep,
                    encoder_attention_mask=batch["mask"].float(), num_frames=frames, height=height, width=width,
                    rope_interpolation_scale=(4 / 16, 8, 8), return_dict=False)[0]  # fmt: skip
        return (out - x).square().mean()

    return model, train_step_fn(forward, adamw(model))


def run(quick: bool = False) -> list[dict]:
    try:
        import diffusers
    except ImportError:
        skipped = "skipped: pip install avgen[vae]"
        return [{"section": SECTION, "metric": "LTX-Video transformer train (fwd+bwd+AdamW)", "value": skipped,
                 "unit": "", "note": "diffusers is not installed"}]  # fmt: skip
    torch.manual_seed(0)
    tiny = PRESETS["tiny"]
    layout = default_layout()
    batch = dit_batch(layout, BATCH)
    ours = build_dit("tiny", layout.pv, layout.pa).train()
    with torch.no_grad():  # adaLN-Zero starts with zero branches; speed must not depend on that
        for p in ours.parameters():
            p.add_(0.02 * torch.randn_like(p))
    our_step = dit_train_step(ours, layout, batch, adamw(ours))
    peer, peer_step = ltx_step(batch, tiny)
    flops = {"ours": count_flops(our_step), "peer": count_flops(peer_step)}
    rounds = 3 if quick else 10
    times = interleaved({"ours": our_step, "peer": peer_step}, rounds=rounds)
    ratios = [p / o for o, p in zip(times["ours"], times["peer"], strict=True)]  # tokens/s ours / peer
    tokens = {k: BATCH * layout.l / min(v) for k, v in times.items()}
    gflops = {k: flops[k] / min(times[k]) / 1e9 for k in times}
    params = {k: sum(p.numel() for p in m.parameters()) / 1e6 for k, m in (("ours", ours), ("peer", peer))}
    shape = f"{layout.l} tokens x batch {BATCH}, text (b, 32, 384), {threads_note()}"
    size = f"width {tiny['width']}, {tiny['heads']} heads, depth {tiny['depth']}"
    return [
        {"section": SECTION, "metric": "LTX-Video transformer train (fwd+bwd+AdamW)", "value": tokens["peer"],
         "unit": "tokens/s", "note": f"diffusers {diffusers.__version__}; {size}, {params['peer']:.2f} M params; "
                                     f"{shape}; {flops['peer'] / 1e9:.1f} GFLOP/step, {gflops['peer']:.1f} GFLOP/s"},
        {"section": SECTION, "metric": "tiny DiT train, same run", "value": tokens["ours"], "unit": "tokens/s",
         "note": f"{params['ours']:.2f} M params; {flops['ours'] / 1e9:.1f} GFLOP/step, {gflops['ours']:.1f} GFLOP/s"},
        {"section": SECTION, "metric": "ours / LTX-Video transformer", "value": statistics.median(ratios),
         "unit": "x tokens/s", "note": f"median of {rounds} interleaved rounds (min {min(ratios):.2f}, "
                                       f"max {max(ratios):.2f})"},
    ]  # fmt: skip
