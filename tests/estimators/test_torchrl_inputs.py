"""Inputs TorchRL 0.14.1's functional estimators take (issue 14), each checked against TorchRL.

``rolling_gamma=False``; γ, λ and V-trace thresholds as one-element tensors or tensors that
broadcast; ``rolling_gamma`` and ``time_dim`` in TorchRL's positions; mixed float dtypes and an
integer/bool reward (promoted); per-step V-trace thresholds; ``log_pi = -inf`` (ρ = 0); and
gradients into ``reward``, ``next_state_value`` and ``state_value`` with ``differentiable=True``.
float64 references get float64 tensor coefficients (exact); float32 ones Python floats.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import Tensor
from torchrl.objectives.value import functional as F

from service.estimators import gae, td0, td1, td_lambda, vtrace
from tests.support.estimators import (
    DTYPES,
    assert_bitwise,
    assert_close,
    force_parallel_builds,
    make_batch,
    per_step,
    torchrl_exact,
)

# (shape, time_dim): batch-first, time-first with features, time in the middle, [B, T].
LAYOUTS = [((5, 23, 1), -2), ((23, 3), 0), ((3, 23, 2), 1), ((4, 23), -1)]
ESTIMATORS = ["gae", "td0", "td1", "td_lambda", "vtrace"]


def _ours(name: str, b, gamma, lm, backend: str = "auto", **kw) -> tuple[Tensor, Tensor]:
    """Our estimator ``name``; ``lm`` is λ except for V-trace (TorchRL's has none; pass
    ``lmbda=`` for rlax's)."""
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    if name == "gae":
        return gae(gamma, lm, *args, _backend=backend, **kw)
    if name == "td0":
        return td0(gamma, *args, **kw)
    if name == "td1":
        return td1(gamma, *args, _backend=backend, **kw)
    if name == "td_lambda":
        return td_lambda(gamma, lm, *args, _backend=backend, **kw)
    return vtrace(gamma, b.log_pi, b.log_mu, *args, _backend=backend, **kw)


def _torchrl(name: str, b, gamma, lmbda, **kw) -> tuple[Tensor, Tensor]:
    """TorchRL's (advantage, target) for the same call, from its functional API."""
    v, nv, r, d, k = b.state_value, b.next_state_value, b.reward, b.done, b.terminated
    if name == "gae":
        return F.generalized_advantage_estimate(gamma, lmbda, v, nv, r, d, k, **kw)
    if name == "td0":
        return F.td0_advantage_estimate(gamma, v, nv, r, d, k), F.td0_return_estimate(
            gamma, nv, r, k
        )
    if name == "td1":
        ret = F.td1_return_estimate(gamma, nv, r, d, k, **kw)
        return ret - v, ret
    if name == "td_lambda":
        ret = F.td_lambda_return_estimate(gamma, lmbda, nv, r, d, k, **kw)
        return ret - v, ret
    return F.vtrace_advantage_estimate(gamma, b.log_pi, b.log_mu, v, nv, r, d, k, **kw)


# ----------------------------------------------------------------------------------------------
# rolling_gamma=False


def _with_episode_ends(b, time_dim: int) -> None:
    """Terminations and truncations in the middle of rows, checked present."""
    inner = b.done.narrow(time_dim, 0, b.done.shape[time_dim] - 1)
    assert (b.terminated & inner.new_ones(()).expand_as(b.done)).any()
    assert (inner & ~b.terminated.narrow(time_dim, 0, inner.shape[time_dim])).any()


@pytest.mark.parametrize("per_step_coefs", ["gamma", "lmbda", "both"])
@pytest.mark.parametrize(("shape", "time_dim"), LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_td_lambda_rolling_gamma_false(
    backend: str, dtype, shape, time_dim: int, per_step_coefs: str
) -> None:
    """Gₖ uses γₖ, λₖ for the rest of its trajectory, through dones in between."""
    b = make_batch(shape, dtype, seed=50 + len(shape), p_done=0.15)
    _with_episode_ends(b, time_dim)
    gamma = per_step(shape, 0.7, 1.0, dtype, 1) if per_step_coefs != "lmbda" else 0.95
    lmbda = per_step(shape, 0.0, 1.0, dtype, 2) if per_step_coefs != "gamma" else 0.3
    ref_gamma = gamma if isinstance(gamma, Tensor) else torchrl_exact(gamma, dtype)
    ref_lmbda = lmbda if isinstance(lmbda, Tensor) else torchrl_exact(lmbda, dtype)
    adv, target = td_lambda(
        gamma, lmbda, b.state_value, b.next_state_value, b.reward, b.done, b.terminated,
        False, time_dim, _backend=backend,
    )  # fmt: skip
    ref = F.td_lambda_return_estimate(
        ref_gamma, ref_lmbda, b.next_state_value, b.reward, b.done, b.terminated,
        rolling_gamma=False, time_dim=time_dim,
    )  # fmt: skip
    assert_close(target, ref)
    assert_close(adv, ref - b.state_value)
    if dtype == torch.float32:
        assert_bitwise(target, ref)  # TorchRL's operation order


@pytest.mark.parametrize(("shape", "time_dim"), LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_td1_rolling_gamma_false(backend: str, dtype, shape, time_dim: int) -> None:
    """Every row ends done (some terminated, some truncated): where TorchRL's td1 is right."""
    b = make_batch(shape, dtype, seed=60 + len(shape), p_done=0.15)
    _with_episode_ends(b, time_dim)
    b.done.select(time_dim, -1).fill_(True)
    last_terminated = b.terminated.select(time_dim, -1)
    last_terminated.copy_(torch.arange(last_terminated.numel()).view_as(last_terminated) % 2 == 0)
    gamma = per_step(shape, 0.7, 1.0, dtype, 3)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, target = td1(gamma, *args, False, time_dim, _backend=backend)
    ref_adv = F.td1_advantage_estimate(gamma, *args, False, time_dim)
    ref = F.td1_return_estimate(gamma, *args[1:], rolling_gamma=False, time_dim=time_dim)
    assert_close(target, ref)
    assert_close(adv, ref_adv)
    # ... and it is TD(λ = 1) with the same rolling_gamma=False, which also bootstraps cut rows.
    _, target_lambda = td_lambda(gamma, 1.0, *args, False, time_dim, _backend=backend)
    assert_close(target, target_lambda)


def test_rolling_gamma_false_constant_coefficients_is_rolling(backend: str) -> None:
    """With γ, λ the same at every step the two conventions agree."""
    b = make_batch((4, 30, 1), torch.float64, seed=70, p_done=0.15)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    gamma = torch.full((4, 30, 1), 0.9, dtype=torch.float64)
    fixed = td_lambda(gamma, 0.6, *args, False, _backend=backend)[1]
    assert_close(fixed, td_lambda(0.9, 0.6, *args, _backend=backend)[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_rolling_gamma_false_parallel_kernel_build(monkeypatch, dtype) -> None:
    """Small inputs run the serial build; force the parallel (prange) one, long trajectories."""
    fetched = force_parallel_builds(monkeypatch)
    shape = (6, 200, 1)
    b = make_batch(shape, dtype, seed=71, p_done=0.01)
    gamma, lmbda = per_step(shape, 0.9, 1.0, dtype, 1), per_step(shape, 0.5, 1.0, dtype, 2)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    _, target = td_lambda(gamma, lmbda, *args, False, _backend="numba")
    ref = F.td_lambda_return_estimate(gamma, lmbda, *args[1:], rolling_gamma=False)
    assert_close(target, ref)
    assert fetched and all(fetched)


# ----------------------------------------------------------------------------------------------
# Coefficients as one-element tensors, or tensors that broadcast


def _coef_form(form: str, value: float, dtype: torch.dtype, shape, seed: int) -> Tensor:
    if form == "0-d":
        return torch.tensor(value, dtype=dtype)
    if form == "[1]":
        return torch.tensor([value], dtype=dtype)
    if form == "[1, 1, 1]":
        return torch.full((1, 1, 1), value, dtype=dtype)
    if form == "per_row":  # one coefficient per trajectory, [B, 1, 1]
        return value * per_step((shape[0], 1, 1), 0.8, 1.0, dtype, seed)
    return value * per_step((1, shape[1], 1), 0.8, 1.0, dtype, seed)  # per_time, [1, T, 1]


@pytest.mark.parametrize("form", ["0-d", "[1]", "[1, 1, 1]", "per_row", "per_time"])
@pytest.mark.parametrize(
    ("dtype", "coef_dtype"),
    [(torch.float64, torch.float64), (torch.float32, torch.float32),
     (torch.float64, torch.float32), (torch.float32, torch.float64)],
)  # fmt: skip
@pytest.mark.parametrize("name", ESTIMATORS)
def test_tensor_coefficients(backend: str, name: str, dtype, coef_dtype, form: str) -> None:
    """``torch.tensor([0.95])`` and friends, used at their own dtype's value as TorchRL does:
    a float32 γ with float64 data is 0.949999988…, and λ·γ, 1 − λ round like TorchRL's. A
    coefficient wider than the data is rounded to the data's dtype (TorchRL computes in the
    wider one and, for TD(0) and V-trace, returns it): equal to float32 precision."""
    shape = (5, 23, 1)
    b = make_batch(shape, dtype, seed=80, p_done=0.15)
    gamma = _coef_form(form, 0.95, coef_dtype, shape, 1)
    lmbda = _coef_form(form, 0.3, coef_dtype, shape, 2)  # < 0.5: 1 − λ rounds in float32
    kw: dict = {}
    if name == "vtrace":
        kw = {
            "rho_thresh": _coef_form(form, 1.2, coef_dtype, shape, 3),
            "c_thresh": _coef_form(form, 0.9, coef_dtype, shape, 4),
        }
    ours = _ours(name, b, gamma, lmbda, backend, **kw)
    ref = _torchrl(name, b, gamma, lmbda, **kw)
    for o, r in zip(ours, ref, strict=True):
        assert o.dtype == dtype
        if coef_dtype.itemsize > dtype.itemsize:
            assert_close(o, r.to(dtype))
        else:
            assert_bitwise(o, r)


def test_one_element_coefficient_on_cpu_is_the_kernels_scalar_path(monkeypatch) -> None:
    """A CPU one-element γ/λ is read on the host: the specialised kernel runs, as for a float."""
    from service.estimators import _kernels

    used: list[str] = []
    real_get = _kernels.get
    monkeypatch.setattr(_kernels, "get", lambda name, *a: used.append(name) or real_get(name, *a))
    b = make_batch((4, 20, 1), torch.float32, seed=81)
    _ours("gae", b, torch.tensor([0.95]), torch.tensor([0.9]), "numba")
    _ours("td_lambda", b, torch.tensor([0.95]), torch.tensor(0.9), "numba")
    _ours("vtrace", b, torch.tensor([0.95]), 1.0, "numba", rho_thresh=torch.tensor([1.0]))
    assert used == ["gae_scalar", "td_lambda_scalar", "vtrace_scalar"]


# ----------------------------------------------------------------------------------------------
# rolling_gamma and time_dim in TorchRL's positions


def _positional(fn) -> list[str]:
    return [
        p.name
        for p in inspect.signature(fn).parameters.values()
        if p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(gae, F.generalized_advantage_estimate), (td0, F.td0_advantage_estimate),
     (td1, F.td1_advantage_estimate), (td_lambda, F.td_lambda_advantage_estimate),
     (vtrace, F.vtrace_advantage_estimate)],
)  # fmt: skip
def test_positional_parameters_are_torchrls(ours, theirs) -> None:
    assert _positional(ours) == _positional(theirs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_positional_calls_match_torchrl(backend: str, dtype) -> None:
    shape = (4, 23, 1)
    b = make_batch(shape, dtype, seed=90, p_done=0.15)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    g = per_step(shape, 0.7, 1.0, dtype, 1)
    lm, rho, c = (torchrl_exact(x, dtype) for x in (0.8, 1.3, 0.7))
    for rolling in (True, False):
        assert_close(
            td_lambda(g, 0.8, *args, rolling, -2, _backend=backend)[0],
            F.td_lambda_advantage_estimate(g, lm, *args, rolling, -2),
        )
    assert_close(td1(g, *args, None, -2, _backend=backend)[0],
                 F.td1_advantage_estimate(g, *args, None, -2))  # fmt: skip
    lps = (b.log_pi, b.log_mu)
    ours = vtrace(g, *lps, *args, 1.3, 0.7, -2, _backend=backend)
    ref = F.vtrace_advantage_estimate(g, *lps, *args, rho, c, -2)
    assert_close(ours[0], ref[0])
    assert_close(ours[1], ref[1])


# ----------------------------------------------------------------------------------------------
# Mixed dtypes: promoted as torch promotes


@pytest.mark.parametrize(
    ("name", "narrow"),
    [(name, "reward") for name in ESTIMATORS]
    + [(name, "state_value") for name in ESTIMATORS]
    + [("vtrace", "log_pi"), ("vtrace", "log_mu")],
)
def test_float32_input_among_float64(backend: str, name: str, narrow: str) -> None:
    """A float32 reward with float64 values (and the like): TorchRL promotes, so do we."""
    b = make_batch((4, 23, 1), torch.float64, seed=100, p_done=0.15)
    setattr(b, narrow, getattr(b, narrow).float())
    g, lm = torchrl_exact(0.95, torch.float64), torchrl_exact(0.8, torch.float64)
    kw = {"rho_thresh": g / g, "c_thresh": g / g} if name == "vtrace" else {}
    ours = _ours(name, b, 0.95, 0.8, backend)
    ref = _torchrl(name, b, g, lm, **kw)
    for o, r in zip(ours, ref, strict=True):
        assert o.dtype == r.dtype == torch.float64
        assert_close(o, r)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_float32_next_state_value_among_float64(backend: str, name: str) -> None:
    """Promoted to float64, outputs included. TorchRL's GAE/TD(λ)/TD(1) write their results into
    next_state_value's float32 here; ours equal TorchRL's on the (exactly) upcast inputs."""
    b = make_batch((4, 23, 1), torch.float64, seed=101, p_done=0.15)
    upcast = make_batch((4, 23, 1), torch.float64, seed=101, p_done=0.15)
    b.next_state_value = b.next_state_value.float()
    upcast.next_state_value = b.next_state_value.double()
    g, lm = torchrl_exact(0.95, torch.float64), torchrl_exact(0.8, torch.float64)
    kw = {"rho_thresh": g / g, "c_thresh": g / g} if name == "vtrace" else {}
    ours = _ours(name, b, 0.95, 0.8, backend)
    ref = _torchrl(name, upcast, g, lm, **kw)
    for o, r in zip(ours, ref, strict=True):
        assert_close(o, r)


@pytest.mark.parametrize("reward_dtype", [torch.int64, torch.int32, torch.bool])
@pytest.mark.parametrize("name", ESTIMATORS)
def test_integer_or_bool_reward(backend: str, name: str, reward_dtype) -> None:
    b = make_batch((4, 23, 1), torch.float32, seed=102, p_done=0.15)
    b.reward = (b.reward * 3).round().to(reward_dtype)
    ours = _ours(name, b, 0.95, 0.8, backend)
    ref = _torchrl(name, b, 0.95, 0.8)
    for o, r in zip(ours, ref, strict=True):
        assert o.dtype == torch.float32
        assert_close(o, r)


# ----------------------------------------------------------------------------------------------
# V-trace: per-step thresholds, log_pi = -inf


@pytest.mark.parametrize("which", ["rho", "c", "both"])
@pytest.mark.parametrize(("shape", "time_dim"), LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_vtrace_per_step_thresholds(backend: str, dtype, shape, time_dim: int, which: str) -> None:
    b = make_batch(shape, dtype, seed=110 + len(shape), p_done=0.15)
    rho = per_step(shape, 0.5, 2.0, dtype, 5) if which != "c" else 1.3
    c = per_step(shape, 0.5, 2.0, dtype, 6) if which != "rho" else 0.7
    ref_rho = rho if isinstance(rho, Tensor) else torchrl_exact(rho, dtype)
    ref_c = c if isinstance(c, Tensor) else torchrl_exact(c, dtype)
    args = (b.log_pi, b.log_mu, b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, vs = vtrace(0.95, *args, rho, c, time_dim=time_dim, _backend=backend)
    ref_adv, ref_vs = F.vtrace_advantage_estimate(
        torchrl_exact(0.95, dtype), *args, ref_rho, ref_c, time_dim=time_dim
    )
    assert_close(adv, ref_adv)
    assert_close(vs, ref_vs)
    # rho_pg_thresh defaults to rho_thresh, per step too
    pg = vtrace(0.95, *args, rho, c, time_dim=time_dim, rho_pg_thresh=rho, _backend=backend)
    assert_bitwise(pg[0], adv)


@pytest.mark.parametrize("coefs", ["scalar", "per_step"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_vtrace_log_pi_minus_inf(backend: str, dtype, coefs: str) -> None:
    """An action the target policy cannot take: ρ = exp(-inf) = 0, finite outputs, TorchRL's."""
    shape = (4, 23, 1)
    b = make_batch(shape, dtype, seed=120, p_done=0.15)
    b.done[1, 9] = True
    impossible = torch.zeros(shape, dtype=torch.bool)
    impossible[0, 3] = impossible[1, 9] = impossible[1, 8] = impossible[2, -1] = True
    impossible[3] = True  # a whole row
    b.log_pi = torch.where(impossible, -math.inf, b.log_pi)
    gamma = per_step(shape, 0.7, 1.0, dtype, 7) if coefs == "per_step" else 0.95
    ref_gamma = gamma if coefs == "per_step" else torchrl_exact(0.95, dtype)
    one = torchrl_exact(1.0, dtype)
    adv, vs = _ours("vtrace", b, gamma, None, backend)
    ref_adv, ref_vs = _torchrl("vtrace", b, ref_gamma, None, rho_thresh=one, c_thresh=one)
    assert torch.isfinite(adv).all() and torch.isfinite(vs).all()
    assert_close(adv, ref_adv)
    assert_close(vs, ref_vs)
    assert (adv[impossible] == 0).all()
    # rlax's λ extension stays finite too
    adv, vs = _ours("vtrace", b, gamma, None, backend, lmbda=0.7)
    assert torch.isfinite(adv).all() and torch.isfinite(vs).all()


# ----------------------------------------------------------------------------------------------
# differentiable=True: TorchRL's gradients


@pytest.mark.parametrize("name", [*ESTIMATORS, "td_lambda_rolling_false"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_differentiable_gradients_match_torchrl(dtype, name: str) -> None:
    """reward.grad, next_state_value.grad and state_value.grad equal TorchRL's (not just > 0)."""
    shape = (3, 21, 1)
    b = make_batch(shape, dtype, seed=130, p_done=0.15)
    gamma = per_step(shape, 0.7, 1.0, dtype, 8) if name.endswith("rolling_false") else 0.9
    kw = {"rolling_gamma": False} if name.endswith("rolling_false") else {}
    base = name.removesuffix("_rolling_false")
    ref_gamma = gamma if isinstance(gamma, Tensor) else torchrl_exact(0.9, dtype)
    ref_kw = dict(kw)
    if base == "vtrace":
        ref_kw["rho_thresh"] = ref_kw["c_thresh"] = torchrl_exact(1.0, dtype)
    g = torch.Generator().manual_seed(0)
    w1, w2 = (torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    grads = []
    for side in ("ours", "torchrl"):
        leaves = [x.clone().requires_grad_() for x in (b.state_value, b.next_state_value, b.reward)]
        lb = type(b)(**{**b.__dict__, "state_value": leaves[0], "next_state_value": leaves[1],
                        "reward": leaves[2]})  # fmt: skip
        if side == "ours":
            adv, target = _ours(base, lb, gamma, 0.8, "auto", differentiable=True, **kw)
        else:
            adv, target = _torchrl(base, lb, ref_gamma, torchrl_exact(0.8, dtype), **ref_kw)
        grads.append(torch.autograd.grad((adv * w1).sum() + (target * w2).sum(), leaves))
    for ours, ref in zip(*grads, strict=True):
        assert_close(ours, ref)
    assert grads[0][2].norm() > 0  # what TorchRL's own tests assert


def test_gradients_are_finite_with_nan_bootstraps() -> None:
    """NaN next values at terminated steps (TorchRL's compact storage) never enter the
    gradients either (TorchRL's would be NaN)."""
    b = make_batch((3, 21, 1), torch.float64, seed=131, p_done=0.2)
    assert b.terminated.any()
    nv = torch.where(b.terminated, math.nan, b.next_state_value).requires_grad_()
    r = b.reward.clone().requires_grad_()
    for fn in (lambda: gae(0.9, 0.8, b.state_value, nv, r, b.done, b.terminated,
                           differentiable=True),
               lambda: td_lambda(0.9, 0.8, b.state_value, nv, r, b.done, b.terminated,
                                 differentiable=True),
               lambda: vtrace(0.9, b.log_pi, b.log_mu, b.state_value, nv, r, b.done,
                              b.terminated, differentiable=True)):  # fmt: skip
        adv, target = fn()
        g_nv, g_r = torch.autograd.grad(adv.sum() + target.sum(), (nv, r))
        assert torch.isfinite(g_nv).all() and torch.isfinite(g_r).all()
        assert (g_nv[b.terminated] == 0).all()
