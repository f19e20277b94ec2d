"""Samplers against exact solutions, CFG, given tokens held bit-exact, and a tiny DiT that memorises a pair."""

from __future__ import annotations

import math

import torch

from avgen.objective import FlowObjective
from avgen.sampling import Given, guided_velocity, schedule, solve
from avgen.tasks import given_masks
from tests.core_fixtures import small_dit, structured_latents, tiny_layout


def test_solvers_match_the_exact_ode_solution():
    """dx/dt = -x + sin(3t): exact x(t) known; integrate from t = 1 to 0."""
    x1 = torch.tensor([[[0.7, -1.2]]], dtype=torch.float64)

    def exact(t):
        # x(t) = C e^{-t} + (sin 3t - 3 cos 3t) / 10, with C from x(1) = x1
        c = (x1 - (math.sin(3) - 3 * math.cos(3)) / 10) * math.e
        return c * math.exp(-t) + (math.sin(3 * t) - 3 * math.cos(3 * t)) / 10

    def velocity(xs, levels):
        t = levels[0][0, 0]
        return (-xs[0] + torch.sin(3 * t),)

    errors = {}
    for method in ("euler", "heun"):
        out = solve(velocity, (x1,), schedule(50).to(torch.float64), method=method)[0]
        errors[method] = float((out - exact(0.0)).abs().max())
    assert errors["euler"] < 0.1 and errors["heun"] < errors["euler"] / 20, errors


def test_schedule_is_shifted_and_ends_at_zero():
    ts = schedule(8, shift=3.0)
    assert ts[0] == 1.0 and ts[-1] == 0.0 and torch.all(ts[1:] < ts[:-1])
    assert ts[4] == 0.75  # t = 0.5 shifted by 3


def test_cfg_scale_one_is_the_conditional_velocity_and_scales_are_per_modality():
    calls = []

    def model_fn(xs, levels, drop):
        calls.append(drop.clone())
        sign = torch.where(drop, -1.0, 1.0)[:, None, None]
        return tuple(sign * (x + 1) for x in xs)

    xs = (torch.randn(2, 3, 4), torch.randn(2, 5, 4))
    levels = (torch.ones(2, 3), torch.ones(2, 5))
    v = guided_velocity(model_fn, (1.0, 1.0))(xs, levels)
    assert torch.equal(v[0], xs[0] + 1) and torch.equal(v[1], xs[1] + 1) and len(calls) == 1
    v = guided_velocity(model_fn, (2.0, 3.0))(xs, levels)
    # v_u + s (v_c - v_u) = -(x+1) + s * 2(x+1)
    torch.testing.assert_close(v[0], 3 * (xs[0] + 1))
    torch.testing.assert_close(v[1], 5 * (xs[1] + 1))


def test_given_tokens_stay_bit_exact():
    layout = tiny_layout()
    model = small_dit(layout).eval()
    xv, xa = structured_latents(layout)
    given = Given.of(given_masks(["a2v"], layout), audio=xa)
    seen_levels = []

    def velocity(xs, levels):
        seen_levels.append(levels[1].clone())
        return model(*xs, *levels, None, None, layout)

    with torch.no_grad():
        out = solve(velocity, (torch.randn_like(xv), torch.randn_like(xa)), schedule(4), "heun", given=given)
    assert torch.equal(out[1], xa)
    assert all(float(lv.abs().max()) == 0.0 for lv in seen_levels)
    ext = Given.of(given_masks(["extend"], layout, [1.0]), xv, xa)
    assert isinstance(ext, Given) and ext.masks[0].sum() == layout.lv // 2
    assert Given.of(given_masks(["t2av"], layout)) is None  # nothing given: plain sampling


def test_tiny_dit_memorises_one_latent_pair():
    torch.manual_seed(0)
    layout = tiny_layout()
    model = small_dit(layout, width=96, depth=2)  # abs_pos=0 as every preset ships: positions come from rope alone
    xv, xa = structured_latents(layout)
    obj = FlowObjective(caption_dropout=0.0, task_weights={"t2av": 1.0}, logit_std=1.0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.0)
    batch = 8
    eval_seeds = [(99, 0, i) for i in range(64)]
    zero_loss = float(obj.draw(eval_seeds, xv.shape[1:], xa.shape[1:], 2.0).eps_video.sub(xv).pow(2).mean())

    def eval_loss():
        with torch.no_grad():
            return float(
                obj(model, xv.expand(64, -1, -1), xa.expand(64, -1, -1), None, None, layout, eval_seeds)["loss"]
            )

    curve = {0: eval_loss()}
    for step in range(500):
        seeds = [(0, step, i) for i in range(batch)]
        loss = obj(model, xv.expand(batch, -1, -1), xa.expand(batch, -1, -1), None, None, layout, seeds)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 100 == 0:
            curve[step + 1] = eval_loss()
    print("memorisation curve (eval loss):", curve, "zero predictor:", 2 * zero_loss)
    assert curve[500] <= 0.1 * 2 * zero_loss  # loss sums the video and audio terms
    model.eval()
    with torch.no_grad():
        for seed in range(4):
            g = torch.Generator().manual_seed(seed)
            noise = (torch.randn(xv.shape, generator=g), torch.randn(xa.shape, generator=g))
            out = solve(lambda xs, lv: model(*xs, *lv, None, None, layout), noise, schedule(10))
            assert float((out[0] - xv).pow(2).mean()) <= 0.1 * float(xv.var())
            assert float((out[1] - xa).pow(2).mean()) <= 0.1 * float(xa.var())
