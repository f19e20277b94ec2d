import torch
from torch import nn

from avgen.train.ema import EMA


def test_ema_tracks_weights_with_exact_decay():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    ema = EMA(model, decay=0.9, warmup=False)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    # one update: ema = 0.9 * start + 0.1 * (start + 1)
    torch.testing.assert_close(ema.model.weight, start + 0.1, rtol=0, atol=1e-6)
    for _ in range(200):
        ema.update(model)
    torch.testing.assert_close(ema.model.weight, model.weight.detach(), rtol=0, atol=1e-6)


def test_ema_warmup_and_state_round_trip():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.999)
    assert ema.current_decay() == 0.1  # (1 + 0) / (10 + 0)
    ema.update(model)
    other = EMA(nn.Linear(2, 2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.step == 1 and other.decay == 0.999
    for a, b in zip(other.model.parameters(), ema.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in ema.model.parameters())
