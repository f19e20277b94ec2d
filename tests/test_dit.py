"""The DiT: shapes, per-token modulation from distinct levels, text masking, activation checkpointing."""

from __future__ import annotations

import torch

from avgen.models.dit import PRESETS, build_dit, modulate
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


def test_modulation_per_distinct_level_equals_naive_per_token():
    layout = tiny_layout()
    model = perturbed(layout)
    b = 2
    levels = torch.tensor([0.0, 0.3, 0.9])
    tv = levels[torch.randint(0, 3, (b, layout.lv))]
    ta = levels[torch.randint(0, 3, (b, layout.la))]
    t = layout.interleave(tv[..., None], ta[..., None])[..., 0]
    block = model.blocks[0]
    uniq, idx = torch.unique(t, return_inverse=True)
    gathered = block.ada(model.t_embed(uniq))[idx]  # (b, l, 6d)
    naive = block.ada(model.t_embed(t.flatten())).view(b, layout.l, -1)
    torch.testing.assert_close(gathered, naive, rtol=1e-5, atol=1e-6)
    x = torch.randn(b, layout.l, 64)
    assert torch.equal(modulate(x, torch.zeros_like(x), torch.zeros_like(x)), x)


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
