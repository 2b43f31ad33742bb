"""service.distributions against TorchRL 0.14.1's distributions."""

from __future__ import annotations

import pytest
import torch
from torch import distributions as D
from torchrl.modules import IndependentNormal
from torchrl.modules import TanhNormal as TorchRLTanhNormal

from service.distributions import (
    DistributionKind,
    TanhNormal,
    entropy,
    kl_divergence,
    log_prob,
    make_distribution,
    rsample_and_log_prob,
)

F64 = torch.float64
TOL = {"atol": 1e-12, "rtol": 0.0}


def _normal_params(seed=0, shape=(6, 3)):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(shape, dtype=F64, generator=g).requires_grad_(True)
    scale = (torch.rand(shape, dtype=F64, generator=g) + 0.2).requires_grad_(True)
    return loc, scale


def test_categorical_matches_torch():
    logits = torch.randn(4, 5, 6, dtype=F64)
    dist = make_distribution("categorical", {"logits": logits})
    ref = D.Categorical(logits=logits)
    action = ref.sample()
    torch.testing.assert_close(log_prob(dist, action), ref.log_prob(action), **TOL)
    torch.testing.assert_close(entropy(dist), ref.entropy(), **TOL)
    assert dist.batch_shape == (4, 5)


def test_normal_matches_independent_normal():
    loc, scale = _normal_params()
    dist = make_distribution(DistributionKind.NORMAL, {"loc": loc, "scale": scale})
    ref = IndependentNormal(loc, scale)
    action = ref.sample()
    torch.testing.assert_close(log_prob(dist, action), ref.log_prob(action), **TOL)
    torch.testing.assert_close(entropy(dist), ref.entropy(), **TOL)
    assert log_prob(dist, action).shape == (6,)


@pytest.mark.parametrize("bounds", [None, (-2.0, 3.0), ([-1.0, 0.0, -5.0], [1.0, 0.5, 5.0])])
def test_tanh_normal_matches_torchrl(bounds):
    loc, scale = _normal_params(1)
    params = {"loc": loc, "scale": scale}
    kw = {}
    if bounds is not None:
        low, high = (torch.tensor(b, dtype=F64) for b in bounds)
        params.update(low=low, high=high)
        kw = {"low": low, "high": high}
    dist = make_distribution("tanh_normal", params)
    ref = TorchRLTanhNormal(loc, scale, **kw)
    assert isinstance(dist, TanhNormal)
    action = ref.sample((2,))[0]
    torch.testing.assert_close(log_prob(dist, action), ref.log_prob(action), **TOL)
    # the same global-seeded draws as TorchRL's rsample_and_log_prob
    torch.manual_seed(11)
    a_ref, lp_ref = ref.rsample_and_log_prob((4,))
    torch.manual_seed(11)
    a, lp = rsample_and_log_prob(dist, (4,))
    torch.testing.assert_close(a, a_ref, **TOL)
    torch.testing.assert_close(lp, lp_ref, **TOL)
    # TorchRL's PPO Monte-Carlo entropy: -mean of those log-probs; gradients flow pathwise
    torch.manual_seed(11)
    ent = entropy(dist, samples_mc_entropy=4)
    torch.testing.assert_close(ent, -lp_ref.mean(0), **TOL)
    (g_loc,) = torch.autograd.grad(ent.sum(), loc)
    (g_ref,) = torch.autograd.grad(-lp_ref.mean(0).sum(), loc)
    torch.testing.assert_close(g_loc, g_ref, **TOL)
    # actions at the bounds keep a finite log-prob (safe tanh)
    edge = ref.low.expand_as(action).clone() if bounds else -torch.ones_like(action)
    assert torch.isfinite(log_prob(dist, edge)).all()


def test_tanh_normal_entropy_is_deterministic_with_a_generator():
    loc, scale = _normal_params(2)
    dist = make_distribution("tanh_normal", {"loc": loc, "scale": scale})
    a = entropy(dist, samples_mc_entropy=8, generator=torch.Generator().manual_seed(3))
    b = entropy(dist, samples_mc_entropy=8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # a consistent estimator: many samples approach a large-sample reference
    big = entropy(dist, samples_mc_entropy=20000, generator=torch.Generator().manual_seed(4))
    many = entropy(dist, samples_mc_entropy=20000, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(big, many, atol=0.05, rtol=0)


def test_kl_analytic_matches_torchrl_choice():
    loc, scale = _normal_params(3)
    p = make_distribution("tanh_normal", {"loc": loc.detach(), "scale": scale.detach()})
    q = make_distribution("tanh_normal", {"loc": loc, "scale": scale * 1.3})
    ref = D.kl_divergence(
        IndependentNormal(loc.detach(), scale.detach()), IndependentNormal(loc, scale * 1.3)
    )
    torch.testing.assert_close(kl_divergence(p, q), ref, **TOL)
    logits = torch.randn(5, 4, dtype=F64)
    cp, cq = (make_distribution("categorical", {"logits": x}) for x in (logits, logits.flip(-1)))
    torch.testing.assert_close(kl_divergence(cp, cq), D.kl_divergence(cp, cq), **TOL)


def test_kl_monte_carlo_for_different_bounds():
    loc, scale = _normal_params(4)
    p = make_distribution("tanh_normal", {"loc": loc, "scale": scale})
    q = make_distribution("tanh_normal", {"loc": loc, "scale": scale, "high": 2.0})
    kl = kl_divergence(p, q, samples_mc_kl=2, generator=torch.Generator().manual_seed(0))
    assert kl.shape == (6,) and torch.isfinite(kl).all()


@pytest.mark.parametrize(
    "kind,params,match",
    [
        ("beta", {}, "kind"),
        ("normal", {"loc": torch.zeros(2, 3)}, "missing"),
        ("normal", {"loc": torch.zeros(2, 3), "scale": torch.ones(2, 3), "x": 1}, "unexpected"),
        ("normal", {"loc": torch.zeros(2, 3), "scale": torch.ones(3)}, r"params\['scale'\]"),
        ("normal", {"loc": torch.zeros(2, 3), "scale": -torch.ones(2, 3)}, "> 0"),
        ("normal", {"loc": torch.zeros(2, 3), "scale": torch.ones(2, 3, dtype=F64)}, "dtype"),
        ("categorical", {"logits": torch.tensor([[float("nan"), 0.0]])}, "NaN"),
        ("categorical", {"logits": torch.zeros(2, 3, dtype=torch.long)}, "floating"),
        (
            "tanh_normal",
            {"loc": torch.zeros(2, 3), "scale": torch.ones(2, 3), "low": 1.0},
            "high > low",
        ),
        (
            "tanh_normal",
            {"loc": torch.zeros(2, 3), "scale": torch.ones(2, 3), "low": torch.zeros(2)},
            "low",
        ),
    ],
)
def test_make_distribution_rejects(kind, params, match):
    with pytest.raises(ValueError, match=match):
        make_distribution(kind, params)


def test_log_prob_rejects_bad_actions():
    cat = make_distribution("categorical", {"logits": torch.zeros(4, 3)})
    with pytest.raises(ValueError, match=r"action: expected shape \(4,\)"):
        log_prob(cat, torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        log_prob(cat, torch.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        log_prob(cat, torch.full((4,), 3))
    normal = make_distribution("normal", {"loc": torch.zeros(4, 2), "scale": torch.ones(4, 2)})
    with pytest.raises(ValueError, match=r"action: expected shape \(4, 2\)"):
        log_prob(normal, torch.zeros(4))
    with pytest.raises(ValueError, match="dtype"):
        log_prob(normal, torch.zeros(4, 2, dtype=F64))
