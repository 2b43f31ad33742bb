"""Parity with TorchRL 0.14.1's functional estimators on random trajectories, both backends.

TorchRL rounds Python-float γ/λ/thresholds to float32 even for float64 data, so its float64
reference gets them as float64 tensors (exact); float32 runs pass Python floats to both.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchrl.objectives.value import functional as F

from service.estimators import gae, td0, td1, td_lambda, vtrace
from tests.support.estimators import (
    DTYPES,
    assert_close,
    force_parallel_builds,
    make_batch,
    per_step,
)

# (shape, time_dim): [T,1], [B,T,1], [B1,B2,T,1], time first, [B,T] with an explicit time_dim,
# several features per step, time in the middle.
LAYOUTS = [
    ((37, 1), -2),
    ((6, 37, 1), -2),
    ((3, 2, 37, 1), -2),
    ((37, 5), 0),
    ((4, 37), -1),
    ((3, 37, 2), 1),
    ((2, 37, 3, 1), -3),
]


def _coef(value: float, dtype: torch.dtype) -> float | torch.Tensor:
    """What TorchRL needs to be exact: a float64 tensor for float64 data."""
    return torch.tensor(value, dtype=torch.float64) if dtype == torch.float64 else value


def _coefs(mode: str, shape: tuple[int, ...], dtype: torch.dtype):
    gamma = per_step(shape, 0.8, 1.0, dtype, 1) if mode == "per_step" else 0.97
    lmbda = per_step(shape, 0.0, 1.0, dtype, 2) if mode == "per_step" else 0.9
    ref = (
        (gamma, lmbda) if mode == "per_step" else (_coef(gamma, dtype), _coef(lmbda, dtype))  # type: ignore[arg-type]
    )
    return (gamma, lmbda), ref


@pytest.mark.parametrize("mode", ["scalar", "per_step"])
@pytest.mark.parametrize(("shape", "time_dim"), LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gae(backend: str, dtype: torch.dtype, shape, time_dim: int, mode: str) -> None:
    b = make_batch(shape, dtype, seed=len(shape) + time_dim)
    (gamma, lmbda), (rg, rl) = _coefs(mode, shape, dtype)
    adv, target = gae(
        gamma, lmbda, b.state_value, b.next_state_value, b.reward, b.done, b.terminated,
        time_dim=time_dim, _backend=backend,
    )  # fmt: skip
    ref_adv, ref_target = F.generalized_advantage_estimate(
        rg, rl, b.state_value, b.next_state_value, b.reward, b.done, b.terminated,
        time_dim=time_dim,
    )  # fmt: skip
    assert_close(adv, ref_adv)
    assert_close(target, ref_target)


@pytest.mark.parametrize("mode", ["scalar", "per_step"])
@pytest.mark.parametrize(("shape", "time_dim"), LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_td_lambda(backend: str, dtype: torch.dtype, shape, time_dim: int, mode: str) -> None:
    b = make_batch(shape, dtype, seed=10 + len(shape))
    (gamma, lmbda), (rg, rl) = _coefs(mode, shape, dtype)
    adv, target = td_lambda(
        gamma, lmbda, b.state_value, b.next_state_value, b.reward, b.done, b.terminated,
        time_dim=time_dim, _backend=backend,
    )  # fmt: skip
    ref = F.td_lambda_return_estimate(
        rg, rl, b.next_state_value, b.reward, b.done, b.terminated, time_dim=time_dim
    )
    assert_close(target, ref)
    assert_close(adv, ref - b.state_value)


@pytest.mark.parametrize("mode", ["scalar", "per_step"])
@pytest.mark.parametrize(("shape", "time_dim"), LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_td1(backend: str, dtype: torch.dtype, shape, time_dim: int, mode: str) -> None:
    b = make_batch(shape, dtype, seed=20 + len(shape))
    (gamma, _), (rg, _) = _coefs(mode, shape, dtype)
    adv, target = td1(
        gamma, b.state_value, b.next_state_value, b.reward, b.done, b.terminated,
        time_dim=time_dim, _backend=backend,
    )  # fmt: skip
    ref = F.td1_return_estimate(
        rg, b.next_state_value, b.reward, b.done, b.terminated, time_dim=time_dim
    )
    assert_close(target, ref)
    assert_close(adv, ref - b.state_value)


@pytest.mark.parametrize("mode", ["scalar", "per_step"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_td0(dtype: torch.dtype, mode: str) -> None:
    shape = (5, 37, 1)
    b = make_batch(shape, dtype, seed=3)
    (gamma, _), (rg, _) = _coefs(mode, shape, dtype)
    adv, target = td0(gamma, b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    ref = F.td0_return_estimate(rg, b.next_state_value, b.reward, b.terminated)
    assert_close(target, ref)
    assert_close(
        adv,
        F.td0_advantage_estimate(
            rg, b.state_value, b.next_state_value, b.reward, b.done, b.terminated
        ),
    )


@pytest.mark.parametrize("thresholds", [(1.0, 1.0), (1.5, 0.8), (0.7, 2.0)])
@pytest.mark.parametrize("mode", ["scalar", "per_step"])
@pytest.mark.parametrize(("shape", "time_dim"), LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_vtrace(
    backend: str, dtype: torch.dtype, shape, time_dim: int, mode: str, thresholds
) -> None:
    b = make_batch(shape, dtype, seed=30 + len(shape))
    (gamma, _), (rg, _) = _coefs(mode, shape, dtype)
    rho, c = thresholds
    adv, vs = vtrace(
        gamma, b.log_pi, b.log_mu, b.state_value, b.next_state_value, b.reward, b.done,
        b.terminated, rho, c, time_dim=time_dim, _backend=backend,
    )  # fmt: skip
    ref_adv, ref_vs = F.vtrace_advantage_estimate(
        rg, b.log_pi, b.log_mu, b.state_value, b.next_state_value, b.reward, b.done,
        b.terminated, rho_thresh=_coef(rho, dtype), c_thresh=_coef(c, dtype), time_dim=time_dim,
    )  # fmt: skip
    assert_close(adv, ref_adv)
    assert_close(vs, ref_vs)


def test_terminated_defaults_to_done(backend: str) -> None:
    b = make_batch((4, 37, 1), torch.float64, seed=5)
    g = torch.tensor(0.97, dtype=torch.float64)
    adv, _ = gae(0.97, 0.9, b.state_value, b.next_state_value, b.reward, b.done, _backend=backend)
    ref, _ = F.generalized_advantage_estimate(
        g, torch.tensor(0.9, dtype=torch.float64), b.state_value, b.next_state_value, b.reward,
        b.done,
    )  # fmt: skip
    assert_close(adv, ref)


def test_last_step_done_and_terminal_rows(backend: str) -> None:
    b = make_batch((4, 37, 1), torch.float64, seed=6)
    b.done[:, -1] = True
    b.terminated[0, -1] = True
    b.done[1] = True  # every step of a row is its own episode
    b.terminated[1, ::2] = True
    g, lm = torch.tensor(0.97, dtype=torch.float64), torch.tensor(0.9, dtype=torch.float64)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, target = gae(0.97, 0.9, *args, _backend=backend)
    ref_adv, ref_target = F.generalized_advantage_estimate(g, lm, *args)
    assert_close(adv, ref_adv)
    assert_close(target, ref_target)


def test_non_contiguous_inputs(backend: str) -> None:
    b = make_batch((37, 4, 1), torch.float32, seed=7)
    views = [x.transpose(0, 1) for x in (b.state_value, b.next_state_value, b.reward)]
    flags = [x.transpose(0, 1) for x in (b.done, b.terminated)]
    assert not views[0].is_contiguous()
    adv, target = gae(0.97, 0.9, *views, *flags, _backend=backend)
    ref_adv, ref_target = F.generalized_advantage_estimate(0.97, 0.9, *views, *flags)
    assert_close(adv, ref_adv)
    assert_close(target, ref_target)


def test_float32_backends_bitwise_equal_torchrl_loop() -> None:
    """Same operation order as TorchRL's loop: not just close, identical (GAE, TD(λ))."""
    b = make_batch((16, 64, 1), torch.float32, seed=8)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    ref_adv, _ = F.generalized_advantage_estimate(0.99, 0.95, *args)
    ref_ret = F.td_lambda_return_estimate(0.99, 0.95, *args[1:])
    for backend in ("numba", "torch"):
        assert torch.equal(gae(0.99, 0.95, *args, _backend=backend)[0], ref_adv)
        assert torch.equal(td_lambda(0.99, 0.95, *args, _backend=backend)[1], ref_ret)


@pytest.mark.parametrize(("shape", "time_dim"), LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_parallel_kernel_build(monkeypatch, dtype: torch.dtype, shape, time_dim: int) -> None:
    """Small inputs run the serial build; force the parallel (prange) build here."""
    fetched = force_parallel_builds(monkeypatch)
    b = make_batch(shape, dtype, seed=40)
    (gamma, lmbda), (rg, rl) = _coefs("per_step", shape, dtype)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, _ = gae(gamma, lmbda, *args, time_dim=time_dim, _backend="numba")
    assert_close(adv, F.generalized_advantage_estimate(rg, rl, *args, time_dim=time_dim)[0])
    _, ret = td_lambda(gamma, lmbda, *args, time_dim=time_dim, _backend="numba")
    assert_close(ret, F.td_lambda_return_estimate(rg, rl, *args[1:], time_dim=time_dim))
    adv, vs = vtrace(gamma, b.log_pi, b.log_mu, *args, time_dim=time_dim, _backend="numba")
    ref = F.vtrace_advantage_estimate(
        rg, b.log_pi, b.log_mu, *args, rho_thresh=_coef(1.0, dtype), c_thresh=_coef(1.0, dtype),
        time_dim=time_dim,
    )  # fmt: skip
    assert_close(adv, ref[0])
    assert_close(vs, ref[1])
    # A single trajectory (no dim before time) has nothing to spread: always serial.
    trajectories = math.prod(shape[: time_dim % len(shape)])
    assert fetched == [trajectories > 1] * 3
