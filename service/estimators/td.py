"""TD(0), TD(1) and TD(λ) returns and advantages, TorchRL 0.14.1 semantics."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from service.errors import ArgumentError
from service.estimators import _backend as be
from service.estimators import _kernels
from service.estimators._checks import (
    DEFAULT_TIME_DIM,
    Coef,
    Layout,
    check_coef,
    check_coef_ranges,
    check_inputs,
    diagnose,
    raise_if_flagged,
)
from service.estimators.standardize import EPS_REWARDS_TD, EPS_REWARDS_TD_LAMBDA, standardize

__all__ = ["td0", "td1", "td_lambda"]


def td0(
    gamma: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    *,
    time_dim: int = DEFAULT_TIME_DIM,
    average_rewards: bool = False,
    differentiable: bool = False,
    validate: bool = True,
    _backend: be.Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """One-step TD return and advantage.

    With k = terminated::

        Gₜ = rₜ + γₜ (1 − kₜ) V′ₜ,   Aₜ = Gₜ − Vₜ

    Each step is independent, so ``done`` only matters through ``terminated``'s default and the
    terminated ⇒ done check; ``time_dim`` only matters for the 2-D ambiguity check, kept so
    every estimator accepts the same layouts. See Sutton & Barto, "Reinforcement Learning: An
    Introduction" (2nd ed., 2018), §6.1. Drop-in for TorchRL's ``td0_advantage_estimate`` /
    ``td0_return_estimate`` plus the ``TD0Estimator`` options.

    Args:
        gamma: discount in [0, 1], a float or a tensor of the inputs' shape.
        state_value: Vₜ, shape ``[*B, T, *F]``, floating.
        next_state_value: V′ₜ = V(sₜ₊₁); only read where not terminated (may be NaN there).
        reward: rₜ.
        done: bool, the trajectory ends after step t.
        terminated: bool, sₜ₊₁ is terminal; must imply ``done``. Defaults to ``done``.
        time_dim: see ``gae``.
        average_rewards: standardise ``reward`` over the whole tensor first (unbiased std
            clamped at 1e-5), like ``TD0Estimator(average_rewards=True)``.
        differentiable: gradients flow into ``state_value`` (the advantage's −Vₜ); every other
            input is detached. When False the outputs never require grad.
        validate: run the data checks (see ``gae``).

    Returns:
        ``(advantage, value_target)`` for steps t = 0 … T−1, inputs' shape/dtype/device.
    """
    layout = check_inputs(
        {"state_value": state_value, "next_state_value": next_state_value, "reward": reward},
        {"done": done, "terminated": terminated},
        time_dim,
    )
    gamma = check_coef("gamma", gamma, layout)
    if terminated is None:
        terminated = done
    needs_grad = differentiable and torch.is_grad_enabled() and state_value.requires_grad
    if _backend not in ("auto", "numba", "torch"):
        raise ArgumentError("_backend", f"expected 'auto', 'numba' or 'torch', got {_backend!r}")
    with torch.set_grad_enabled(needs_grad):
        value = state_value if needs_grad else state_value.detach()
        next_value, reward = next_state_value.detach(), reward.detach()
        if validate:
            raise_if_flagged(
                {"state_value": value, "next_state_value": next_value, "reward": reward},
                done,
                terminated,
                {"gamma": gamma},
            )
        if average_rewards:
            reward = standardize(reward, EPS_REWARDS_TD, "average_rewards")
        # Elementwise already: the same few torch ops serve every device (no kernel).
        value_target = reward + gamma * torch.where(terminated, 0.0, next_value)
        advantage = value_target - value
    return advantage, value_target


def td1(
    gamma: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    *,
    time_dim: int = DEFAULT_TIME_DIM,
    rolling_gamma: bool | None = None,
    average_rewards: bool = False,
    differentiable: bool = False,
    validate: bool = True,
    _backend: be.Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """Monte-Carlo return bootstrapped at trajectory ends: TD(λ) with λ = 1.

    ::

        Gₜ = rₜ + γₜ (1 − kₜ) Bₜ,   Bₜ = V′ₜ if dₜ or t = T−1 else Gₜ₊₁;   Aₜ = Gₜ − Vₜ

    Same arguments as ``td_lambda`` without ``lmbda``; ``average_rewards`` uses eps 1e-5 like
    ``TD1Estimator``. Drop-in for TorchRL's ``td1_advantage_estimate`` / ``td1_return_estimate``
    (with ``rolling_gamma`` None or True, the only mode supported).
    """
    return _td_lambda(
        gamma, 1.0, state_value, next_state_value, reward, done, terminated, time_dim,
        rolling_gamma, average_rewards, EPS_REWARDS_TD, differentiable, validate, _backend,
    )  # fmt: skip


def td_lambda(
    gamma: float | Tensor,
    lmbda: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    *,
    time_dim: int = DEFAULT_TIME_DIM,
    rolling_gamma: bool | None = None,
    average_rewards: bool = False,
    differentiable: bool = False,
    validate: bool = True,
    _backend: be.Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """TD(λ) return (λ-return) and advantage.

    With Ṽₜ = (1 − kₜ) V′ₜ (selected, so V′ may be NaN at terminated steps)::

        Gₜ = rₜ + γₜ [(1 − λₜ) Ṽₜ + λₜ Bₜ],   Bₜ = Ṽₜ if dₜ or t = T−1 else Gₜ₊₁
        Aₜ = Gₜ − Vₜ

    See Sutton & Barto, "Reinforcement Learning: An Introduction" (2nd ed., 2018), §12.1.
    Drop-in for TorchRL's ``td_lambda_advantage_estimate`` / ``td_lambda_return_estimate`` plus
    the ``TDLambdaEstimator`` options; unlike TorchRL's vectorised version, a per-step λ works.

    Args:
        gamma: γₜ in [0, 1], a float or a tensor of the inputs' shape.
        lmbda: λₜ in [0, 1], a float or a tensor of the inputs' shape.
        state_value: Vₜ, shape ``[*B, T, *F]``; only used for the advantage.
        next_state_value: V′ₜ = V(sₜ₊₁); only read where not terminated.
        reward: rₜ.
        done: bool, the trajectory ends after step t (cuts the λ-return).
        terminated: bool, sₜ₊₁ is terminal (zeroes the bootstrap); must imply ``done``.
        time_dim: see ``gae``.
        rolling_gamma: only None/True (TorchRL's default: γₜ belongs to step t) is supported.
        average_rewards: standardise ``reward`` first (unbiased std clamped at 1e-4, like
            ``TDLambdaEstimator``).
        differentiable: gradients flow into ``state_value`` (the advantage's −Vₜ; the return
            does not depend on it); every other input is detached.
        validate: run the data checks (see ``gae``).

    Returns:
        ``(advantage, value_target)`` for steps t = 0 … T−1, inputs' shape/dtype/device.
    """
    return _td_lambda(
        gamma, lmbda, state_value, next_state_value, reward, done, terminated, time_dim,
        rolling_gamma, average_rewards, EPS_REWARDS_TD_LAMBDA, differentiable, validate,
        _backend,
    )  # fmt: skip


def _td_lambda(
    gamma: float | Tensor,
    lmbda: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None,
    time_dim: int,
    rolling_gamma: bool | None,
    average_rewards: bool,
    eps: float,
    differentiable: bool,
    validate: bool,
    backend: be.Backend,
) -> tuple[Tensor, Tensor]:
    layout = check_inputs(
        {"state_value": state_value, "next_state_value": next_state_value, "reward": reward},
        {"done": done, "terminated": terminated},
        time_dim,
    )
    if rolling_gamma not in (None, True):
        raise ArgumentError("rolling_gamma", f"expected None or True, got {rolling_gamma!r}")
    gamma = check_coef("gamma", gamma, layout)
    lmbda = check_coef("lmbda", lmbda, layout)
    if terminated is None:
        terminated = done
    needs_grad = differentiable and torch.is_grad_enabled() and state_value.requires_grad
    chosen = be.choose(backend, layout, needs_grad)
    with torch.set_grad_enabled(needs_grad):
        value = state_value if needs_grad else state_value.detach()
        next_value, reward = next_state_value.detach(), reward.detach()
        values = {"state_value": value, "next_state_value": next_value, "reward": reward}
        coefs = {"gamma": gamma, "lmbda": lmbda}
        if validate and chosen == "torch":
            raise_if_flagged(values, done, terminated, coefs)
        if average_rewards:
            reward = standardize(reward, eps, "average_rewards")
        if chosen == "numba":
            if validate:
                check_coef_ranges(coefs)
            advantage, adv_rows = be.new_rows(layout)
            ret, ret_rows = be.new_rows(layout)
            err = np.zeros(layout.n_rows, dtype=np.int32)
            data = [be.rows(x, layout) for x in (value, next_value, reward, done, terminated)]
            if be.scalar_fast_path(layout, gamma, lmbda):
                one = be.one(layout)
                _kernels.get("td_lambda_scalar", be.parallel(layout))(
                    be.scalar(gamma, layout),
                    be.scalar(lmbda, layout),
                    one - be.scalar(lmbda, layout),  # in the data's dtype, as TorchRL's 1 − λ
                    *(x[..., 0] for x in (*data, adv_rows, ret_rows)),
                    err,
                    validate,
                )
            else:
                _kernels.get("td_lambda", be.parallel(layout))(
                    be.coef_rows(gamma, layout),
                    be.coef_rows(lmbda, layout),
                    *data,
                    adv_rows,
                    ret_rows,
                    err,
                    be.one(layout),
                    validate,
                )
            if validate and err.any():
                diagnose(values, done, terminated, coefs)
            return advantage, ret
        return _td_lambda_torch(gamma, lmbda, value, next_value, reward, done, terminated, layout)


def _td_lambda_torch(
    gamma: Coef,
    lmbda: Coef,
    value: Tensor,
    next_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor,
    layout: Layout,
) -> tuple[Tensor, Tensor]:
    v, nv, r, d, k = (
        be.time_major(x, layout) for x in (value, next_value, reward, done, terminated)
    )
    g = be.coef_time_major(gamma, layout)
    lm = be.coef_time_major(lmbda, layout)
    nv = torch.where(k, 0.0, nv).contiguous()
    # (1 − λ)·Ṽ for every step at once; the loop keeps TorchRL's operation order.
    mixed = ((1 - lm) * nv).contiguous()
    r = r.contiguous()
    ret: list[Tensor] = []
    boot = nv[-1]
    for t in range(layout.n_steps - 1, -1, -1):
        if t < layout.n_steps - 1:
            boot = torch.where(d[t], nv[t], ret[-1])
        ret.append(r[t] + be.coef_step(g, t) * (mixed[t] + be.coef_step(lm, t) * boot))
    value_target = torch.stack(ret[::-1])
    advantage = value_target - v
    return be.from_time_major(advantage, layout), be.from_time_major(value_target, layout)
