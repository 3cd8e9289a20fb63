import math

import pytest
import torch

from vitlab.models.dropout import Dropout, dropout, dropped_positions


def test_positions_are_sorted_unique_and_in_range():
    torch.manual_seed(0)
    pos = dropped_positions(100_000, 0.05)
    assert pos.dtype == torch.long
    assert (pos.diff() > 0).all() and pos.min() >= 0 and pos.max() < 100_000


@pytest.mark.parametrize("p", [0.01, 0.1, 0.2])
def test_drop_rate_matches_bernoulli(p):
    torch.manual_seed(1)
    n = 1_000_000
    count = len(dropped_positions(n, p))
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) < 5 * sigma


def test_every_position_is_dropped_equally_often_and_independently():
    torch.manual_seed(2)
    n, p, trials = 50, 0.2, 20_000
    hits = torch.zeros(trials, n)
    for t in range(trials):
        hits[t, dropped_positions(n, p)] = 1
    freq = hits.mean(0)
    sigma = math.sqrt(p * (1 - p) / trials)
    assert (freq - p).abs().max() < 5 * sigma
    # neighbours are independent: P(drop at i+1 | drop at i) = p
    both = (hits[:, :-1] * hits[:, 1:]).sum() / hits[:, :-1].sum()
    assert abs(both.item() - p) < 0.01


def test_forward_and_backward_share_the_mask_and_scale():
    torch.manual_seed(3)
    x = torch.randn(64, 8, 17, 17, requires_grad=True)
    y = dropout(x, 0.1, training=True)
    kept = y != 0
    assert 0.85 < kept.float().mean() < 0.95
    assert torch.allclose(y[kept], x[kept] / 0.9)
    y.backward(torch.ones_like(y))
    assert torch.allclose(x.grad, kept.float() / 0.9)


def test_eval_mode_zero_rate_and_high_rate():
    x = torch.randn(10, 10)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    high = dropout(torch.ones(10_000), 0.5, training=True)  # falls back to F.dropout
    assert set(high.unique().tolist()) <= {0.0, 2.0}
    assert repr(Dropout(0.01)) == "Dropout(p=0.01)"


def test_same_seed_same_mask():
    torch.manual_seed(4)
    a = dropped_positions(10_000, 0.01)
    torch.manual_seed(4)
    assert torch.equal(a, dropped_positions(10_000, 0.01))
