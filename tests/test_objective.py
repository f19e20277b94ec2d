"""Rectified flow objective: independent per-modality levels, correct marginals, masks, split-invariant loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avgen.flow import shift_time
from avgen.objective import FlowObjective, per_sample_loss
from avgen.tasks import TASKS, given_masks
from tests.core_fixtures import small_dit, structured_latents, tiny_layout


def shifted_logit_normal_cdf(x: np.ndarray, mean: float, std: float, s: float) -> np.ndarray:
    """CDF of t' = shift(sigmoid(N(mean, std))): invert the shift, then the logit-normal CDF."""
    t = x / (s - (s - 1) * x)
    z = (np.log(t / (1 - t)) - mean) / std
    return 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))


def test_levels_independent_per_modality_with_the_right_marginals():
    obj = FlowObjective(logit_mean=0.0, logit_std=1.0, shift=3.0)
    d = obj.draw([(0, 0, i) for i in range(10_000)], (1, 1), (1, 1), 2.0)
    tv, ta = d.t_video.numpy(), d.t_audio.numpy()
    assert abs(np.corrcoef(tv, ta)[0, 1]) < 0.05
    grid = np.linspace(0.02, 0.98, 49)
    for t in (tv, ta):
        empirical = (t[None, :] <= grid[:, None]).mean(1)
        ks = np.abs(empirical - shifted_logit_normal_cdf(grid, 0.0, 1.0, 3.0)).max()
        assert ks < 0.02, ks
    assert shift_time(torch.tensor(0.5), 3.0) == 0.75


def test_draws_are_a_pure_function_of_seed_step_index():
    obj = FlowObjective()
    a = obj.draw([(1, 5, 0), (1, 5, 1)], (3, 2), (4, 2), 2.0)
    b = obj.draw([(1, 5, 1)], (3, 2), (4, 2), 2.0)
    assert torch.equal(a.eps_video[1], b.eps_video[0]) and a.t_audio[1] == b.t_audio[0]
    assert a.task[1] == b.task[0]


def test_task_masks_hold_tokens_clean():
    """One rule for training and sampling: the task table's given_masks."""
    layout = tiny_layout()
    gv, ga = given_masks(["t2av", "a2v", "v2a", "extend"], layout, torch.tensor([0, 0, 0, 1.0]))
    assert not gv[0].any() and not ga[0].any()
    assert ga[1].all() and not gv[1].any() and gv[2].all() and not ga[2].any()
    assert gv[3].sum() == layout.lv // 2 and ga[3].sum() == layout.la // 2
    assert set(FlowObjective().task_weights) <= set(TASKS)
    with pytest.raises(ValueError, match="unknown tasks \\['continue'\\]"):
        FlowObjective(task_weights={"t2av": 1.0, "continue": 0.1})  # one name for continuation: extend


def test_loss_is_normalised_per_sample_and_split_invariant():
    layout = tiny_layout()
    model = small_dit(layout)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    xv, xa = structured_latents(layout)
    xv, xa = xv.repeat(4, 1, 1), xa.repeat(4, 1, 1)
    obj = FlowObjective(task_weights={"t2av": 0.4, "a2v": 0.2, "v2a": 0.2, "extend": 0.2})
    seeds = [(0, 3, i) for i in range(4)]
    whole = obj(model, xv, xa, None, None, layout, seeds)["loss"]
    halves = [obj(model, xv[i : i + 2], xa[i : i + 2], None, None, layout, seeds[i : i + 2])["loss"] for i in (0, 2)]
    torch.testing.assert_close(whole, (halves[0] + halves[1]) / 2, rtol=1e-5, atol=1e-6)
    keep = torch.tensor([[True, False], [False, False]])
    loss = per_sample_loss(torch.ones(2, 2, 3), torch.zeros(2, 2, 3), keep)
    assert loss.tolist() == [1.0, 0.0]
