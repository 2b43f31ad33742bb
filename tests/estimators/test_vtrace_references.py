"""V-trace's λ / ρ̄_pg extension against rlax's and DI-engine's formulas, re-typed as numpy loops.

The loops below follow rlax ``vtrace_td_error_and_advantage`` (google-deepmind/rlax,
rlax/_src/vtrace.py) and DI-engine ``vtrace_nstep_return`` / ``vtrace_advantage``
(opendilab/DI-engine, ding/rl_utils/vtrace.py): time-major, one trajectory, no done/terminated
split (rlax cuts with ``discount_t = 0``; DI-engine has no episode ends at all).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.estimators import vtrace


def _rlax(v_tm1, v_t, r_t, discount_t, rho_tm1, lambda_, clip_rho, clip_pg_rho):
    """rlax: c = λ·min(1, ρ); q bootstrap λₜ·vsₜ₊₁ + (1 − λₜ)·Vₜ₊₁, last step vₜ."""
    c_tm1 = np.minimum(1.0, rho_tm1) * lambda_
    clipped_rhos = np.minimum(clip_rho, rho_tm1)
    td_errors = clipped_rhos * (r_t + discount_t * v_t - v_tm1)
    err = 0.0
    errors = np.zeros_like(v_t)
    for i in reversed(range(len(v_t))):
        err = td_errors[i] + discount_t[i] * c_tm1[i] * err
        errors[i] = err
    targets = errors + v_tm1
    q_bootstrap = np.concatenate(
        [lambda_[:-1] * targets[1:] + (1 - lambda_[:-1]) * v_tm1[1:], v_t[-1:]]
    )
    q_estimate = r_t + discount_t * q_bootstrap
    pg_adv = np.minimum(clip_pg_rho, rho_tm1) * (q_estimate - v_tm1)
    return targets, pg_adv


def _di_engine(rho, reward, values, gamma, lambda_, rho_clip, c_clip, rho_pg_clip):
    """DI-engine: values has T+1 entries; factor γλ; pg advantage bootstraps on vsₜ₊₁."""
    rhos = np.minimum(rho, rho_clip)
    cs = np.minimum(rho, c_clip)
    deltas = rhos * (reward + gamma * values[1:] - values[:-1])
    result = values[:-1].copy()
    item = 0.0
    for t in reversed(range(len(reward))):
        item = deltas[t] + gamma * lambda_ * cs[t] * item
        result[t] += item
    ret_next = np.concatenate([result[1:], values[-1:]])
    adv = np.minimum(rho, rho_pg_clip) * (reward + gamma * ret_next - values[:-1])
    return result, adv


def _trajectory(seed: int, steps: int = 30):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=steps + 1)
    reward = rng.normal(size=steps)
    log_pi = 0.7 * rng.normal(size=steps)
    log_mu = 0.7 * rng.normal(size=steps)
    return values, reward, log_pi, log_mu


def _ours(values, reward, log_pi, log_mu, terminated, gamma, **kwargs):
    def col(x):
        return torch.as_tensor(np.asarray(x), dtype=torch.float64).reshape(-1, 1)

    flags = torch.as_tensor(terminated).reshape(-1, 1)
    adv, vs = vtrace(
        gamma, col(log_pi), col(log_mu), col(values[:-1]), col(values[1:]), col(reward),
        flags, flags, **kwargs,
    )  # fmt: skip
    return vs.numpy().ravel(), adv.numpy().ravel()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("lmbda", [1.0, 0.95, 0.5, 0.0])
@pytest.mark.parametrize(("rho_thresh", "rho_pg_thresh"), [(1.0, 1.0), (1.0, 0.5), (2.0, 3.0)])
def test_matches_rlax(
    backend: str, seed: int, lmbda: float, rho_thresh: float, rho_pg_thresh: float
) -> None:
    values, reward, log_pi, log_mu = _trajectory(seed)
    terminated = np.zeros(len(reward), dtype=bool)
    terminated[[7, 19]] = True  # rlax expresses a termination as discount 0
    gamma = 0.9
    discount = np.where(terminated, 0.0, gamma)
    rho = np.exp(log_pi - log_mu)
    lam = np.full(len(reward), lmbda)
    # rlax bootstraps on the next step's state value, so the values chain across ends.
    targets, pg_adv = _rlax(
        values[:-1], values[1:], reward, discount, rho, lam, rho_thresh, rho_pg_thresh
    )
    vs, adv = _ours(
        values, reward, log_pi, log_mu, terminated, gamma, rho_thresh=rho_thresh, c_thresh=1.0,
        lmbda=lmbda, rho_pg_thresh=rho_pg_thresh, _backend=backend,
    )  # fmt: skip
    np.testing.assert_allclose(vs, targets, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(adv, pg_adv, rtol=1e-12, atol=1e-12)


def test_matches_rlax_per_step_lambda(backend: str) -> None:
    values, reward, log_pi, log_mu = _trajectory(11)
    lam = np.random.default_rng(3).uniform(size=len(reward))
    terminated = np.zeros(len(reward), dtype=bool)
    targets, pg_adv = _rlax(
        values[:-1], values[1:], reward, np.full(len(reward), 0.95), np.exp(log_pi - log_mu),
        lam, 1.0, 1.0,
    )  # fmt: skip
    vs, adv = _ours(
        values, reward, log_pi, log_mu, terminated, 0.95,
        lmbda=torch.as_tensor(lam).reshape(-1, 1), _backend=backend,
    )  # fmt: skip
    np.testing.assert_allclose(vs, targets, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(adv, pg_adv, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("lmbda", [1.0, 0.95, 0.3])
@pytest.mark.parametrize(
    ("rho", "c", "rho_pg"), [(1.0, 1.0, 1.0), (1.5, 0.8, 0.6), (0.9, 1.7, 2.0)]
)
def test_matches_di_engine(
    backend: str, seed: int, lmbda: float, rho: float, c: float, rho_pg: float
) -> None:
    values, reward, log_pi, log_mu = _trajectory(100 + seed)
    ratio = np.exp(log_pi - log_mu)
    ref_vs, ref_adv = _di_engine(ratio, reward, values, 0.97, lmbda, rho, c, rho_pg)
    vs, adv = _ours(
        values, reward, log_pi, log_mu, np.zeros(len(reward), dtype=bool), 0.97,
        rho_thresh=rho, c_thresh=c, lmbda=lmbda, rho_pg_thresh=rho_pg, _backend=backend,
    )  # fmt: skip
    np.testing.assert_allclose(vs, ref_vs, rtol=1e-12, atol=1e-12)
    if lmbda == 1.0:
        np.testing.assert_allclose(adv, ref_adv, rtol=1e-12, atol=1e-12)
    else:
        # Documented difference: DI-engine's pg advantage bootstraps on vsₜ₊₁ unmixed.
        assert not np.allclose(adv, ref_adv)
