"""The DiT: shapes, per-token modulation from distinct levels, text masking, activation checkpointing, and text
anchored in time (scripts): a line reaches only the tokens of its span, untimed text all of them."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import pytest
import torch

from avgen.models.dit import PRESETS, CrossAttention, build_dit
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


# ----------------------------------------------------------------------------------------------------------------------
# time-anchored text (scripts)
# ----------------------------------------------------------------------------------------------------------------------
def cross_attention_before_scripts(self, x, text, text_mask):
    """CrossAttention.forward as it was before text_spans: the reference for the untimed path."""
    b, l, d = x.shape
    s, hd = text.shape[1], d // self.heads
    q = self.q_norm(self.q(x).view(b, l, self.heads, hd)).transpose(1, 2)
    k, v = self.kv(text).view(b, s, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
    mask = text_mask[:, None, None, :].bool()
    out = torch.nn.functional.scaled_dot_product_attention(q, self.k_norm(k), v, attn_mask=mask)
    return self.proj(out.transpose(1, 2).reshape(b, l, d))


def _script_inputs(layout, b: int = 2):
    g = torch.Generator().manual_seed(3)
    xv, xa = torch.randn(b, layout.lv, layout.pv, generator=g), torch.randn(b, layout.la, layout.pa, generator=g)
    tv, ta = torch.full((b, layout.lv), 0.6), torch.full((b, layout.la), 0.6)
    text = torch.randn(b, 8, 16, generator=g)
    mask = torch.ones(b, 8, dtype=torch.bool)
    inf = float("inf")
    spans = torch.tensor([[-inf, inf]] * 3 + [[0.5, 1.0]] * 3 + [[1.5, 1.75]] * 2).expand(b, 8, 2)  # (b, s, 2)
    return (xv, xa, tv, ta), text, mask, spans


def test_without_spans_the_network_is_bit_identical_to_before(monkeypatch):
    layout = tiny_layout()
    model = perturbed(layout)
    twin = copy.deepcopy(model)
    tokens, text, mask, _ = _script_inputs(layout)
    mask[1, 5:] = False
    drop = torch.tensor([False, True])
    with torch.no_grad():
        now = [model(*tokens, text, mask, layout, drop_text=d) for d in (None, drop)]
        with monkeypatch.context() as m:
            m.setattr(CrossAttention, "forward", cross_attention_before_scripts)
            before = [twin(*tokens, text, mask, layout, drop_text=d, text_spans=None) for d in (None, drop)]
    for a, b in zip(now, before, strict=True):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_timed_text_reaches_only_the_tokens_of_its_span_and_untimed_text_all():
    """One block: a token's output depends on text only through its own cross-attention (self-attention runs
    before it), so replacing a line's states changes exactly the tokens allowed to attend to that line."""
    layout = tiny_layout()
    model = perturbed(layout, depth=1)
    tokens, text, mask, spans = _script_inputs(layout)
    (v0, v1), (a0, a1) = layout.bounds()
    inside = {"video": (v0 < 1.0) & (v1 > 0.5), "audio": (a0 < 1.0) & (a1 > 0.5)}  # the line at 0.5-1.0 s
    assert 0 < inside["video"].sum() < layout.lv and 0 < inside["audio"].sum() < layout.la
    with torch.no_grad():
        base = model(*tokens, text, mask, layout, text_spans=spans)
        for line, reach in ((slice(3, 6), inside), (slice(0, 3), None)):  # the timed line, then the untimed one
            other = text.clone()
            other[:, line] = torch.randn(2, 3, 16)
            out = model(*tokens, other, mask, layout, text_spans=spans)
            for m, (old, new) in enumerate(zip(base, out, strict=True)):
                changed = (old - new).abs().amax(-1) > 0  # (b, l_m)
                want = torch.ones_like(changed) if reach is None else reach[("video", "audio")[m]].expand_as(changed)
                assert torch.equal(changed, want), (line, m)
        free = model(*tokens, text, mask, layout)  # without spans every token reads the timed line
        assert ((free[0] - base[0]).abs().amax(-1) > 0).all()


def test_spans_never_empty_a_row_and_the_null_text_is_untimed():
    layout = tiny_layout()
    model = perturbed(layout)
    tokens, text, mask, _ = _script_inputs(layout)
    late = torch.tensor([5.0, 6.0]).expand(2, 8, 2)  # every line after the clip: no token may see any
    with torch.no_grad():
        got = model(*tokens, text, mask, layout, text_spans=late)
        want = model(*tokens, text, mask, layout)
        assert all(torch.isfinite(x).all() for x in got)
        torch.testing.assert_close(got, want)  # falls back to the text mask
        drop = torch.tensor([True, True])
        dropped = model(*tokens, text, mask, layout, drop_text=drop, text_spans=late)
        torch.testing.assert_close(dropped, model(*tokens, None, None, layout))
