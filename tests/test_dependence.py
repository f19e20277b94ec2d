"""The cross-modal dependence probe (gap_v2a / gap_a2v), the sync path, sync guidance, and the objective's modality
dropout and onset weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from avgen.metrics.dependence import dependence, derangement, headline, make_probe_set, near_events
from avgen.models.dit import SyncPath
from avgen.objective import FlowObjective, onset_weights, per_sample_loss
from avgen.sampling import guided_velocity
from tests.core_fixtures import small_dit, tiny_layout


class Oracle(nn.Module):
    """Knows each clip's audio from its video (audio x0 = video tokens' window means) and the reverse; blind=True
    ignores the other modality and predicts from the noisy tokens alone."""

    def __init__(self, layout, blind: bool = False) -> None:
        super().__init__()
        self.layout, self.blind = layout, blind
        self.dummy = nn.Parameter(torch.zeros(1))

    def audio_from_video(self, xv):  # (b, lv, pv) -> (b, la, pa)
        frames = xv.view(xv.shape[0], self.layout.grid[0], -1, xv.shape[-1]).mean(2)  # (b, t, pv)
        return frames.repeat_interleave(self.layout.per_window, dim=1)[..., : self.layout.pa]

    def forward(self, xv, xa, tv, ta, text, mask, layout):
        t_a = ta[..., None].clamp_min(1e-3)
        x0_a = torch.zeros_like(xa) if self.blind else self.audio_from_video(xv)
        va = (xa - x0_a) / t_a  # exact when x0_a is right: x_t = (1 - t) x0 + t eps -> v = (x_t - x0) / t
        return torch.zeros_like(xv), va


def probe_data(layout, n_per_family=4):
    torch.manual_seed(1)  # not the probe's noise seed (0)
    n = 2 * n_per_family
    xv = torch.randn(n, layout.lv, layout.pv)
    xa = Oracle(layout).audio_from_video(xv)
    text, mask = torch.zeros(n, 1, 16), torch.ones(n, 1, dtype=torch.bool)
    fams = ["bounce"] * n_per_family + ["talk"] * n_per_family
    events = [[0.55]] * n
    return make_probe_set(xv, xa, text, mask, fams, layout, events, 1 / 16)


def test_gap_is_one_for_a_model_that_needs_the_video_and_zero_for_one_that_cannot_see_it():
    layout = tiny_layout()
    probes = probe_data(layout)
    seeing = dependence(Oracle(layout), probes, layout)
    blind = dependence(Oracle(layout, blind=True), probes, layout)
    for fam in ("bounce", "talk", "all"):
        assert seeing[fam]["v2a"]["own"] < 1e-10 and seeing[fam]["v2a"]["other"] > 0.1
        assert seeing[fam]["v2a"]["gap"] == pytest.approx(1.0)
        assert blind[fam]["v2a"]["own"] == blind[fam]["v2a"]["other"] > 0.1 and blind[fam]["v2a"]["gap"] == 0.0
    from avgen.metrics.dependence import probe

    flat = headline(probe(Oracle(layout), probes, layout))
    assert flat["val/gap_v2a"] == pytest.approx(1.0) and flat["val/gap_a2v"] == 0.0  # its video ignores the audio
    assert flat["val/loss_v2a_own/bounce"] < 1e-10 and "val/gap_v2a_events/talk" in flat
    assert flat["val/gap_v2a_at_noise/bounce"] == pytest.approx(1.0)  # the scored audio at pure noise


def test_a_real_dit_probe_restores_training_mode_and_the_derangement_stays_in_family():
    layout = tiny_layout()
    probes = probe_data(layout)
    other = derangement(probes.families)
    assert all(probes.families[i] == probes.families[int(j)] and i != int(j) for i, j in enumerate(other))
    model = small_dit(layout).train()
    for p in model.parameters():
        nn.init.normal_(p, std=0.05)
    out = dependence(model, probes, layout, levels=(0.5,))
    assert model.training and set(out) == {"bounce", "talk", "all"} and out["all"]["v2a"]["own"] > 0
    with pytest.raises(ValueError, match="two clips"):
        derangement(["bounce", "talk", "talk"])


def test_event_tokens_are_those_within_a_frame_of_an_event():
    layout = tiny_layout()  # audio tokens of 50 ms, video windows of 250 ms
    near_v, near_a = near_events(layout, [[0.55], []], tol=1 / 16)
    times = layout.audio_times
    want = (times - 0.025 - 1 / 16 <= 0.55) & (0.55 <= times + 0.025 + 1 / 16)
    assert torch.equal(near_a[0], want) and int(want.sum()) == 4  # spans 0.45-0.65 s and not near_a[1].any()
    frames = near_v[0].view(layout.grid[0], -1).all(1)  # whole windows: [0.25, 0.5] (ends 50 ms before) and [0.5, 0.75]
    assert frames.tolist() == [False, True, True, False, False, False, False, False]


def test_sync_path_reaches_only_the_audio_of_its_own_and_neighbouring_windows():
    layout = tiny_layout()
    torch.manual_seed(0)
    sync = SyncPath(32, layout.per_window)
    nn.init.normal_(sync.out.weight, std=0.1)
    hv = torch.randn(1, layout.lv, 32)
    base = sync(hv, layout.grid[0])  # (1, la, 32)
    moved = hv.clone().view(1, layout.grid[0], -1, 32)
    moved[:, 4] += 1.0  # change what window 4 shows
    diff = (sync(moved.view(1, layout.lv, 32), layout.grid[0]) - base).abs().sum(-1)[0]  # (la,)
    per_window = diff.view(layout.grid[0], layout.per_window).sum(1)
    assert (per_window[3:6] > 0).all() and (per_window[:3] == 0).all() and (per_window[6:] == 0).all()


def test_a_dit_with_the_sync_path_starts_as_the_dit_without_it():
    layout = tiny_layout()
    plain = small_dit(layout)
    synced = small_dit(layout, sync_per_window=layout.per_window)
    missing, unexpected = synced.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(".sync." in k for k in missing) and not unexpected
    for p in plain.parameters():  # move the shared weights off adaLN-Zero's zero output
        nn.init.normal_(p, std=0.05)
    synced.load_state_dict(plain.state_dict(), strict=False)
    xs = (torch.randn(2, layout.lv, layout.pv), torch.randn(2, layout.la, layout.pa))
    ts = (torch.rand(2, layout.lv), torch.rand(2, layout.la))
    text = torch.randn(2, 3, 16)
    a, b = plain(*xs, *ts, text, None, layout), synced(*xs, *ts, text, None, layout)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    b[1].square().sum().backward()
    assert synced.blocks[0].sync.out.weight.grad.abs().sum() > 0  # zero-init, yet it learns


def test_sync_guidance_follows_its_formula_and_scale_one_skips_the_branch():
    calls = []

    def model_fn(xs, levels, drop):  # audio velocity depends on the video; text dropped flips the sign
        calls.append(xs[0].shape[0])
        sign = torch.where(drop, -1.0, 1.0)[:, None, None]
        return sign * xs[0], sign * (xs[1] + xs[0].mean(1, keepdim=True))

    xs = (torch.randn(2, 3, 4), torch.randn(2, 5, 4))
    levels = (torch.full((2, 3), 0.5), torch.full((2, 5), 0.5))
    noise = torch.randn(2, 3, 4)
    v = guided_velocity(model_fn, (1.0, 1.0), 1.0, 0, noise)(xs, levels)
    assert calls == [2]
    v = guided_velocity(model_fn, (1.0, 1.0), 3.0, 0, noise)(xs, levels)
    assert calls[-1] == 4  # conditional + video unseen
    v_c, v_x = xs[1] + xs[0].mean(1, keepdim=True), xs[1] + noise.mean(1, keepdim=True)
    torch.testing.assert_close(v[1], v_c + 2.0 * (v_c - v_x))
    torch.testing.assert_close(v[0], xs[0])  # the video (sync_from) gets no sync term
    v = guided_velocity(model_fn, (2.0, 2.0), 3.0, 0, noise)(xs, levels)
    assert calls[-1] == 6  # + the null-text branch
    torch.testing.assert_close(v[1], -v_c + 2.0 * (2 * v_c) + 2.0 * (v_c - v_x))


def test_modality_dropout_leaves_the_other_draws_unchanged():
    seeds = [(0, 3, i) for i in range(64)]
    base = FlowObjective().draw(seeds, (4, 2), (5, 2), 2.0)
    drop = FlowObjective(modality_dropout=1.0).draw(seeds, (4, 2), (5, 2), 2.0)
    assert torch.equal(base.t_video, drop.t_video) and base.task == drop.task and not base.dropped.any()
    t2av = torch.tensor([t == "t2av" for t in drop.task])
    assert (drop.dropped[t2av] > 0).all() and (drop.dropped[~t2av] == 0).all()
    assert 0.3 < float((drop.dropped[t2av] == 1).float().mean()) < 0.7  # video or audio, even odds


def test_onset_weights_favour_changes_and_weight_the_loss():
    x0 = torch.zeros(1, 8, 2)
    x0[0, 5:] = 3.0  # one step up at token 5
    w = onset_weights(x0, 2.0)
    assert int(w.argmax()) == 5 and float(w[0, 0]) == 1.0 and float(w[0, 5]) == pytest.approx(1 + 2 * 8)
    err = torch.zeros(1, 8, 2)
    err[0, 5] = 1.0
    keep = torch.ones(1, 8, dtype=torch.bool)
    plain, weighted = per_sample_loss(err, torch.zeros_like(err), keep), per_sample_loss(err, 0 * err, keep, w)
    assert float(plain) == pytest.approx(1 / 8) and float(weighted) == pytest.approx(17 / float(w.sum()))
