"""The DiT: shapes, per-token modulation from distinct levels, text masking, activation checkpointing."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from avgen.models.dit import PRESETS, build_dit
from avgen.tokens import AVTokenLayout
from tests.core_fixtures import small_dit, tiny_layout


def test_forward_shapes_and_zero_init():
    layout = tiny_layout()
    model = small_dit(layout)
    b = 3
    xv, xa = torch.randn(b, layout.lv, layout.pv), torch.randn(b, layout.la, layout.pa)
    vv, va = model(xv, xa, torch.rand(b, layout.lv), torch.rand(b, layout.la), torch.randn(b, 5, 16), None, layout)
    assert vv.shape == xv.shape and va.shape == xa.shape
    assert vv.abs().max() == 0 and va.abs().max() == 0  # adaLN-Zero output layers start at zero


def perturbed(layout, **kw):
    model = small_dit(layout, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def modulate(x, shift, scale):
    """adaLN written out: x * (1 + scale) + shift (the model forms 1 + scale once per distinct level)."""
    return x * (1 + scale) + shift


def _mixed_levels(layout, b: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    levels = torch.tensor([0.0, 0.3, 0.9])
    tv = levels[torch.randint(0, 3, (b, layout.lv), generator=g)]
    ta = levels[torch.randint(0, 3, (b, layout.la), generator=g)]
    return layout.interleave(tv[..., None], ta[..., None])[..., 0]  # (b, l)


def reference_block(block, x, t_emb_tok, text, mask, cos2, sin2):
    """DiTBlock written out with each token's modulation computed from its own level embedding (no gathering)."""
    shift1, scale1, gate1, shift2, scale2, gate2 = block.ada(t_emb_tok).chunk(6, dim=-1)  # (b, l, d) each
    x = x + gate1 * block.attn(modulate(block.norm1(x), shift1, scale1), cos2, sin2)
    x = x + block.cross(block.norm_x(x), text, mask)
    return x + gate2 * block.mlp(modulate(block.norm2(x), shift2, scale2))


def test_block_and_final_layer_match_a_token_by_token_reference_modulation():
    layout = tiny_layout()
    model = perturbed(layout)
    b = 2
    t = _mixed_levels(layout, b)
    x, text, mask = torch.randn(b, layout.l, 64), torch.randn(b, 5, 16), torch.ones(b, 5, dtype=torch.bool)
    uniq, idx = torch.unique(t, return_inverse=True)
    cos2, sin2 = model._rope(layout, x.device)
    block, final = model.blocks[0], model.out_video
    with torch.no_grad():
        got = block(x, idx.flatten(), model.t_embed(uniq), text, mask, cos2, sin2, layout)
        per_token = model.t_embed(t.flatten()).view(b, layout.l, -1)  # (b, l, d): each token from its own level
        want = reference_block(block, x, per_token, text, mask, cos2, sin2)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        shift, scale = final.ada(per_token).chunk(2, dim=-1)
        want_out = final.linear(modulate(final.norm(x), shift, scale))
        torch.testing.assert_close(final(x, model.t_embed(uniq), idx.flatten()), want_out, rtol=1e-4, atol=1e-5)
    one_level = per_token[:, :1].expand_as(per_token)  # every token modulated by the first token's level
    assert not torch.allclose(want, reference_block(block, x, one_level, text, mask, cos2, sin2))  # levels matter
    xz = torch.randn(b, layout.l, 64)
    assert torch.equal(modulate(xz, torch.zeros_like(xz), torch.zeros_like(xz)), xz)


def test_rotary_scores_depend_on_relative_position_only():
    """q.k after rope is the same for (i, j) and (i + s, j + s), and changes with i - j (so positions are seen)."""
    from avgen.models.dit import rope_full, rope_tables
    from avgen.models.rope import rope_angles

    hd = 16
    pos = torch.zeros(40, 3)
    pos[:, 0] = torch.arange(40) * 2.5  # tokens along time, in ticks
    cos2, sin2 = rope_tables(*rope_angles(pos, hd, finest_spacing=2.5, max_span=200.0))
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(hd, generator=g), torch.randn(hd, generator=g)
    qs, ks = rope_full(q.expand(40, hd), cos2, sin2), rope_full(k.expand(40, hd), cos2, sin2)  # (l, hd) each
    scores = qs @ ks.T  # (l, l): the same q and k content at every position
    for offset in (0, 1, 3, 7):
        diag = torch.diagonal(scores, offset)
        torch.testing.assert_close(diag, diag[:1].expand_as(diag), rtol=1e-4, atol=1e-4)
    by_offset = torch.stack([torch.diagonal(scores, o)[0] for o in range(8)])
    assert float(by_offset.std()) > 0.05 * float(by_offset.abs().mean()), by_offset  # relative position matters


def test_text_mask_and_null_text():
    layout = tiny_layout()
    model = perturbed(layout)
    b = 2
    xv, xa = torch.randn(b, layout.lv, layout.pv), torch.randn(b, layout.la, layout.pa)
    tv, ta = torch.full((b, layout.lv), 0.5), torch.full((b, layout.la), 0.5)
    text = torch.randn(b, 4, 16)
    mask = torch.tensor([[True, True, False, False]] * b)
    garbage = text.clone()
    garbage[:, 2:] = 1000.0  # masked positions must not matter
    out1 = model(xv, xa, tv, ta, text, mask, layout)
    out2 = model(xv, xa, tv, ta, garbage, mask, layout)
    torch.testing.assert_close(out1[0], out2[0])
    null = model(xv, xa, tv, ta, None, None, layout)
    dropped = model(xv, xa, tv, ta, text, mask, layout, drop_text=torch.tensor([True, True]))
    torch.testing.assert_close(null[0], dropped[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out1[0], null[0])


def test_activation_checkpointing_gives_same_gradients():
    layout = tiny_layout()
    grads = []
    for ckpt in (False, True):
        model = perturbed(layout, grad_checkpointing=ckpt, modality_mlp=True).train()
        torch.manual_seed(1)
        xv, xa = torch.randn(2, layout.lv, layout.pv), torch.randn(2, layout.la, layout.pa)
        vv, va = model(xv, xa, torch.rand(2, layout.lv), torch.rand(2, layout.la), torch.randn(2, 3, 16), None, layout)
        (vv.square().mean() + va.square().mean()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_tiny_preset_size():
    layout = tiny_layout()
    model = build_dit("tiny", layout.pv, layout.pa)
    n = sum(p.numel() for p in model.parameters())
    assert 5e6 <= n <= 10e6, n
    assert set(PRESETS) >= {"tiny", "small", "base", "large"}


def test_rotary_cache_follows_the_layout_not_its_id():
    """New layouts of other lengths, made as old ones die (CPython reuses their ids), get their own rope tables."""
    from tests.core_fixtures import AUDIO, VIDEO

    model = small_dit(tiny_layout())
    for i in range(12):
        seconds = (1.0, 2.0, 1.5)[i % 3]
        layout = AVTokenLayout.from_geometry(VIDEO, AUDIO, seconds, (64, 64), audio_patch=2)
        cos2, _ = model._rope(layout, torch.device("cpu"))
        assert cos2.shape[0] == layout.l, (seconds, cos2.shape, layout.l)
        del layout


def test_autocast_is_decided_in_one_place():
    from avgen.train.distributed import autocast_for

    with autocast_for("cpu"):
        assert not torch.is_autocast_enabled("cpu")  # CPU trains fp32
    with pytest.warns(UserWarning, match="CUDA is not available") if not torch.cuda.is_available() else nullcontext():
        ctx = autocast_for(torch.device("cuda"))
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16  # a context manager, not a factory
