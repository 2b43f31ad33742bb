"""DreamerV3's maths core against hand-worked cases, the paper's equations re-typed here, and
TorchRL 0.14.1 as an independent oracle."""

from __future__ import annotations

import math

import pytest
import torch
from torchrl.modules.models.model_based import _default_bins
from torchrl.modules.value_norm import PercentileValueNorm
from torchrl.objectives.dreamer_v3 import (
    categorical_kl_balanced,
    categorical_kl_terms,
    two_hot_cross_entropy,
    two_hot_encode,
)
from torchrl.objectives.dreamer_v3 import two_hot_decode as torchrl_decode

from service.losses.dreamer import (
    default_bins,
    imagination_weights,
    kl_balanced,
    kl_separate,
    lambda_return,
    return_scale,
    symexp,
    symlog,
    two_hot_decode,
    updated_return_range,
)
from service.losses.dreamer import (
    two_hot_cross_entropy as our_two_hot_cross_entropy,
)
from service.losses.dreamer import (
    two_hot_encode as our_two_hot_encode,
)


def test_symlog_and_symexp_by_hand() -> None:
    x = torch.tensor([-math.e + 1, 0.0, math.e**2 - 1], dtype=torch.float64)
    assert torch.allclose(symlog(x), torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64))
    y = torch.linspace(-30, 30, 61, dtype=torch.float64)
    assert torch.allclose(symexp(symlog(y)), y, rtol=1e-12)


def test_bins_are_torchrls_and_symmetric() -> None:
    ours = default_bins(255, dtype=torch.float64)
    theirs = _default_bins(255, dtype=torch.float64)
    assert ours.shape == (255,)
    assert torch.equal(ours, theirs)
    assert torch.equal(ours, -ours.flip(0)) and ours[127] == 0
    assert math.isclose(float(ours[-1]), math.exp(20) - 1, rel_tol=1e-12)
    assert torch.equal(default_bins(6, dtype=torch.float64), _default_bins(6, dtype=torch.float64))


def test_two_hot_by_hand() -> None:
    bins = torch.tensor([-1.0, 0.0, 1.0, 3.0], dtype=torch.float64)
    # 0.25 sits a quarter of the way from 0 to 1; 2 halfway from 1 to 3; 7 saturates at 3.
    encoded = our_two_hot_encode(torch.tensor([0.25, 2.0, 7.0], dtype=torch.float64), bins)
    expected = torch.tensor(
        [[0, 0.75, 0.25, 0], [0, 0, 0.5, 0.5], [0, 0, 0, 1]], dtype=torch.float64
    )
    assert torch.allclose(encoded, expected)
    # Uniform logits over 4 bins: cross-entropy is log 4 for any target; decoding = mean bin.
    logits = torch.zeros(3, 4, dtype=torch.float64)
    ce = our_two_hot_cross_entropy(logits, torch.tensor([0.25, 2.0, 7.0]).double(), bins)
    assert torch.allclose(ce, torch.full((3,), math.log(4), dtype=torch.float64))
    assert torch.allclose(two_hot_decode(logits, bins), torch.full((3,), 0.75).double())


def test_uniform_logits_decode_to_exactly_zero_in_float32() -> None:
    # A zero-initialised reward head: the ±4.9e8 ends of the support must cancel exactly.
    bins = default_bins(255, dtype=torch.float32)
    assert float(two_hot_decode(torch.zeros(5, 255), bins).abs().max()) == 0.0


def test_two_hot_matches_torchrl_on_255_bins() -> None:
    torch.manual_seed(0)
    bins = default_bins(255, dtype=torch.float64)
    target = torch.randn(64, dtype=torch.float64) * 50
    logits = torch.randn(64, 255, dtype=torch.float64)
    assert torch.allclose(our_two_hot_encode(target, bins), two_hot_encode(target, bins))
    assert torch.allclose(
        our_two_hot_cross_entropy(logits, target, bins),
        two_hot_cross_entropy(logits, target, bins),
        rtol=1e-12,
    )
    assert torch.allclose(two_hot_decode(logits, bins), torchrl_decode(logits, bins), rtol=1e-9)


def _paper_lambda_return(r, v_next, c, gamma, lmbda):
    """Hafner et al. 2023, eq. 7, re-typed on plain floats: R_t = r_t + γ c_t ((1 − λ) v_{t+1}
    + λ R_{t+1}), R_H = v_H, where v_next[t] = v_{t+1}."""
    horizon = len(r)
    returns = [0.0] * horizon
    following = v_next[-1]
    for t in reversed(range(horizon)):
        following = r[t] + gamma * c[t] * ((1 - lmbda) * v_next[t] + lmbda * following)
        returns[t] = following
    return returns


def test_lambda_return_hand_worked() -> None:
    # H = 2, γ = 0.5, λ = 0.5, continue 1 then 0.5:
    #   R_1 = r_1 + γ c_1 v_2 = 1 + 0.5·0.5·4 = 2
    #   R_0 = r_0 + γ c_0 ((1 − λ) v_1 + λ R_1) = 2 + 0.5·1·(0.5·2 + 0.5·2) = 3
    r = torch.tensor([[2.0, 1.0]], dtype=torch.float64)
    v_next = torch.tensor([[2.0, 4.0]], dtype=torch.float64)
    c = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    out = lambda_return(r, v_next, c, gamma=0.5, lmbda=0.5)
    assert torch.allclose(out, torch.tensor([[3.0, 2.0]], dtype=torch.float64))


def test_lambda_return_matches_the_paper_equation() -> None:
    torch.manual_seed(1)
    r, v, c = (torch.rand(3, 15, dtype=torch.float64) for _ in range(3))
    out = lambda_return(r, v, c, gamma=0.997, lmbda=0.95)
    for row in range(3):
        expected = _paper_lambda_return(
            r[row].tolist(), v[row].tolist(), c[row].tolist(), 0.997, 0.95
        )
        assert torch.allclose(out[row], torch.tensor(expected, dtype=torch.float64), rtol=1e-12)


def test_lambda_one_is_the_discounted_sum_and_lambda_zero_the_one_step_target() -> None:
    r = torch.tensor([[1.0, 1.0, 1.0]], dtype=torch.float64)
    v = torch.tensor([[10.0, 20.0, 30.0]], dtype=torch.float64)
    c = torch.ones_like(r)
    # λ = 1: R_0 = 1 + 0.9 + 0.81 + 0.729·30
    assert math.isclose(float(lambda_return(r, v, c, 0.9, 1.0)[0, 0]), 2.71 + 0.729 * 30)
    # λ = 0: R_t = r_t + γ v_{t+1}
    assert torch.allclose(lambda_return(r, v, c, 0.9, 0.0), r + 0.9 * v)


def test_imagination_weights_by_hand() -> None:
    c = torch.tensor([[1.0, 0.5, 0.5]], dtype=torch.float64)
    w = imagination_weights(c, gamma=0.5)
    assert torch.allclose(w, torch.tensor([[1.0, 0.25, 0.0625]], dtype=torch.float64))


def test_return_normalisation_hand_worked() -> None:
    zero = torch.zeros(1, dtype=torch.float64)
    returns = torch.linspace(0.0, 100.0, 101, dtype=torch.float64)
    # Rate 1 jumps to the batch's percentiles: P5 = 5, P95 = 95 → scale 90.
    low, high = updated_return_range(zero, zero, returns, rate=1.0)
    assert (float(low), float(high)) == (5.0, 95.0)
    assert float(return_scale(low, high)) == 90.0
    # Rate 0.01 from zero: low = 0.05, high = 0.95 → the span 0.9 is lifted to min_scale 1.
    low, high = updated_return_range(zero, zero, returns, rate=0.01)
    assert math.isclose(float(low), 0.05) and math.isclose(float(high), 0.95)
    assert float(return_scale(low, high)) == 1.0
    # A second step: low = 0.05 + 0.01 (5 − 0.05), high = 0.95 + 0.01 (95 − 0.95).
    low, high = updated_return_range(low, high, returns, rate=0.01)
    assert math.isclose(float(low), 0.0995) and math.isclose(float(high), 1.8905)
    assert math.isclose(float(return_scale(low, high)), 1.791)


def test_return_normalisation_tracks_torchrls_percentile_norm() -> None:
    torch.manual_seed(2)
    norm = PercentileValueNorm(rate=0.01).double()
    low = high = torch.zeros(1, dtype=torch.float64)
    for _ in range(20):
        returns = torch.randn(16, 15, 1, dtype=torch.float64) * 30 + 5
        norm.update(returns)
        low, high = updated_return_range(low, high, returns)
    assert torch.allclose(low, norm.low) and torch.allclose(high, norm.high)
    assert torch.allclose(return_scale(low, high), norm.scale())


def test_kl_terms_match_torchrl_and_free_bits_bind() -> None:
    torch.manual_seed(3)
    post = torch.randn(4, 5, 8, 8, dtype=torch.float64) * 3
    prior = torch.randn(4, 5, 8, 8, dtype=torch.float64) * 3
    assert torch.allclose(
        kl_balanced(post, prior, 0.8, 1.0), categorical_kl_balanced(post, prior, 0.8, 1.0)
    )
    for ours, theirs in zip(
        kl_separate(post, prior, 1.0, 0.01),
        categorical_kl_terms(post, prior, 1.0, 0.01),
        strict=True,
    ):
        assert torch.allclose(ours, theirs)
    # Equal distributions: KL = 0, so the free bits are the loss, and it has no gradient.
    same = post.clone().requires_grad_()
    loss = kl_balanced(same, same.detach().clone(), 0.8, free_bits=1.0)
    assert math.isclose(float(loss.detach()), 1.0)
    (grad,) = torch.autograd.grad(loss, same)
    assert float(grad.abs().max()) == 0.0
    dyn, rep = kl_separate(same, same.detach().clone(), free_nats=1.0)
    assert math.isclose(float(dyn), 1.0) and math.isclose(float(rep), 1.0)


@pytest.mark.parametrize("bad", [(3, 4), (3,)])
def test_lambda_return_refuses_mismatched_shapes(bad) -> None:
    from service.errors import ArgumentError

    with pytest.raises(ArgumentError, match="reward"):
        lambda_return(torch.zeros(3, 5), torch.zeros(*bad), torch.zeros(3, 5), 0.9, 0.9)
