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
    derive,
    diagnose,
    is_per_step,
    operand,
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
    out: be.Out = None,
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
        gamma: discount in [0, 1]: a float or a tensor (shapes as in ``gae``).
        state_value: Vₜ, shape ``[*B, T, *F]``, floating (mixed float dtypes are promoted).
        next_state_value: V′ₜ = V(sₜ₊₁); only read where not terminated (may be NaN there).
        reward: rₜ (may be integer or bool: promoted).
        done: bool, the trajectory ends after step t.
        terminated: bool, sₜ₊₁ is terminal; must imply ``done``. Defaults to ``done``.
        time_dim: see ``gae``.
        average_rewards: standardise ``reward`` over the whole tensor first (unbiased std
            clamped at 1e-5), like ``TD0Estimator(average_rewards=True)``.
        differentiable: gradients flow into ``state_value``, ``next_state_value`` and
            ``reward``, as through TorchRL's functional; γ is detached. When False the outputs
            never require grad.
        validate: run the data checks (see ``gae``).
        out: an output pair to write into and return (see ``gae``).

    Returns:
        ``(advantage, value_target)`` for steps t = 0 … T−1, inputs' shape and device, in the
        value tensors' promoted dtype.
    """
    layout = check_inputs(
        {"state_value": state_value, "next_state_value": next_state_value, "reward": reward},
        {"done": done, "terminated": terminated},
        time_dim,
    )
    gamma = check_coef("gamma", gamma, layout)
    if terminated is None:
        terminated = done
    needs_grad = be.wants_grad(differentiable, state_value, next_state_value, reward)
    if _backend not in ("auto", "numba", "torch"):
        raise ArgumentError("_backend", f"expected 'auto', 'numba' or 'torch', got {_backend!r}")
    be.check_out(out, layout, needs_grad, (state_value, next_state_value, reward, done, terminated))
    with torch.set_grad_enabled(needs_grad):
        value, next_value, reward = be.grad_inputs(
            layout, needs_grad, state_value, next_state_value, reward
        )
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
    return be.deliver((advantage, value_target), out)


def td1(
    gamma: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    rolling_gamma: bool | None = None,
    time_dim: int = DEFAULT_TIME_DIM,
    *,
    average_rewards: bool = False,
    differentiable: bool = False,
    validate: bool = True,
    out: be.Out = None,
    _backend: be.Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """Monte-Carlo return bootstrapped at trajectory ends: TD(λ) with λ = 1.

    ::

        Gₜ = rₜ + γₜ (1 − kₜ) Bₜ,   Bₜ = V′ₜ if dₜ or t = T−1 else Gₜ₊₁;   Aₜ = Gₜ − Vₜ

    Same arguments as ``td_lambda`` without ``lmbda``; ``average_rewards`` uses eps 1e-5 like
    ``TD1Estimator``. Drop-in for TorchRL's ``td1_advantage_estimate`` (same positional order,
    ``rolling_gamma`` and ``time_dim`` included) / ``td1_return_estimate``.

    ``rolling_gamma=False`` (per-step γ only, as in TorchRL) discounts the whole remaining
    trajectory from step k with γₖ. It is refused unless every trajectory's last step is done:
    TorchRL 0.14.1's ``td1_return_estimate`` starts that loop from 0 and so silently drops the
    bootstrap of a trajectory the batch cuts; ``td_lambda(gamma, 1.0, …, rolling_gamma=False)``
    bootstraps it (and equals TorchRL's ``td1`` wherever the latter is right).
    """
    return _td_lambda(
        gamma, 1.0, state_value, next_state_value, reward, done, terminated, time_dim,
        rolling_gamma, average_rewards, EPS_REWARDS_TD, differentiable, validate, out,
        _backend, "td1",
    )  # fmt: skip


def td_lambda(
    gamma: float | Tensor,
    lmbda: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    rolling_gamma: bool | None = None,
    time_dim: int = DEFAULT_TIME_DIM,
    *,
    average_rewards: bool = False,
    differentiable: bool = False,
    validate: bool = True,
    out: be.Out = None,
    _backend: be.Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """TD(λ) return (λ-return) and advantage.

    With Ṽₜ = (1 − kₜ) V′ₜ (selected, so V′ may be NaN at terminated steps)::

        Gₜ = rₜ + γₜ [(1 − λₜ) Ṽₜ + λₜ Bₜ],   Bₜ = Ṽₜ if dₜ or t = T−1 else Gₜ₊₁
        Aₜ = Gₜ − Vₜ

    See Sutton & Barto, "Reinforcement Learning: An Introduction" (2nd ed., 2018), §12.1.
    Drop-in for TorchRL's ``td_lambda_advantage_estimate`` (same positional order,
    ``rolling_gamma`` and ``time_dim`` included) / ``td_lambda_return_estimate`` plus the
    ``TDLambdaEstimator`` options; unlike TorchRL's vectorised version, a per-step λ works.

    Args:
        gamma: γₜ in [0, 1]: a float or a tensor (shapes as in ``gae``).
        lmbda: λₜ in [0, 1], as ``gamma``.
        state_value: Vₜ, shape ``[*B, T, *F]``; only used for the advantage. Mixed float
            dtypes are promoted (torch's rules); the outputs have the promoted dtype.
        next_state_value: V′ₜ = V(sₜ₊₁); only read where not terminated.
        reward: rₜ (may be integer or bool: promoted).
        done: bool, the trajectory ends after step t (cuts the λ-return).
        terminated: bool, sₜ₊₁ is terminal (zeroes the bootstrap); must imply ``done``.
        rolling_gamma: None/True (TorchRL's default): γₜ, λₜ belong to step t, as above.
            False (TorchRL's sequential ``td_lambda_return_estimate``; needs a per-step γ or λ,
            a tensor of the inputs' shape, as there): Gₖ is step k's λ-return with γₖ and λₖ at
            every later step, Gₖ = Rₖ,ₖ where Rₖ,ₜ = rₜ + γₖ[(1 − λₖ)Ṽₜ + λₖBₖ,ₜ] and
            Bₖ,ₜ = Ṽₜ if dₜ or t = T−1 else Rₖ,ₜ₊₁. The kernel does O(L²) work per trajectory of
            length L; the torch path O(T²) per row, in T vectorised steps (TorchRL's loop takes
            T²/2 steps).
        time_dim: see ``gae``.
        average_rewards: standardise ``reward`` first (unbiased std clamped at 1e-4, like
            ``TDLambdaEstimator``).
        differentiable: gradients flow into ``state_value``, ``next_state_value`` and
            ``reward``, as through TorchRL's functional; γ and λ are detached.
        validate: run the data checks (see ``gae``).
        out: an output pair to write into and return (see ``gae``).

    Returns:
        ``(advantage, value_target)`` for steps t = 0 … T−1, inputs' shape and device, in the
        value tensors' promoted dtype.
    """
    return _td_lambda(
        gamma, lmbda, state_value, next_state_value, reward, done, terminated, time_dim,
        rolling_gamma, average_rewards, EPS_REWARDS_TD_LAMBDA, differentiable, validate, out,
        _backend, "td_lambda",
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
    out: be.Out,
    backend: be.Backend,
    estimator: str,
) -> tuple[Tensor, Tensor]:
    layout = check_inputs(
        {"state_value": state_value, "next_state_value": next_state_value, "reward": reward},
        {"done": done, "terminated": terminated},
        time_dim,
    )
    if rolling_gamma not in (None, True, False):
        raise ArgumentError("rolling_gamma", f"expected None, True or False, got {rolling_gamma!r}")
    fixed_gamma = rolling_gamma is not None and not rolling_gamma  # TorchRL's rolling_gamma=False
    gamma_c = check_coef("gamma", gamma, layout)
    lmbda_c = check_coef("lmbda", lmbda, layout)
    # TorchRL's (1 − λ): in the data's dtype for a Python float (it fills a tensor like the
    # values first), in λ's own dtype for a tensor.
    one_minus_lmbda: Coef = (
        derive(1 - operand(lmbda, layout), layout)
        if isinstance(lmbda, Tensor)
        else be.one_minus(lmbda_c, layout)
    )
    if terminated is None:
        terminated = done
    if fixed_gamma:
        _check_not_rolling(estimator, gamma, lmbda, done, layout)
    needs_grad = be.wants_grad(differentiable, state_value, next_state_value, reward)
    chosen = be.choose(backend, layout, needs_grad)
    be.check_out(out, layout, needs_grad, (state_value, next_state_value, reward, done, terminated))
    with torch.set_grad_enabled(needs_grad):
        value, next_value, reward = be.grad_inputs(
            layout, needs_grad, state_value, next_state_value, reward
        )
        values = {"state_value": value, "next_state_value": next_value, "reward": reward}
        coefs = {"gamma": gamma_c, "lmbda": lmbda_c}
        if validate and chosen == "torch":
            raise_if_flagged(values, done, terminated, coefs)
        if average_rewards:
            reward = standardize(reward, eps, "average_rewards")
        if chosen == "torch":
            run = _td_lambda_fixed_torch if fixed_gamma else _td_lambda_torch
            results = run(gamma_c, lmbda_c, one_minus_lmbda, value, next_value, reward, done,
                          terminated, layout)  # fmt: skip
            return be.deliver(results, out)
        if validate:
            check_coef_ranges(coefs)
        advantage, adv_rows = be.new_rows(layout, None if out is None else out[0])
        ret, ret_rows = be.new_rows(layout, None if out is None else out[1])
        err = np.zeros(layout.n_rows, dtype=np.int32)
        data = [be.rows(x, layout) for x in (value, next_value, reward, done, terminated)]
        if not fixed_gamma and be.scalar_fast_path(layout, gamma_c, lmbda_c, one_minus_lmbda):
            _kernels.get("td_lambda_scalar", be.parallel(layout))(
                be.scalar(gamma_c, layout),
                be.scalar(lmbda_c, layout),
                be.scalar(one_minus_lmbda, layout),
                *(x[..., 0] for x in (*data, adv_rows, ret_rows)),
                err,
                validate,
            )
        else:
            name = "td_lambda_fixed" if fixed_gamma else "td_lambda"
            _kernels.get(name, be.parallel(layout))(
                be.coef_rows(gamma_c, layout),
                be.coef_rows(lmbda_c, layout),
                be.coef_rows(one_minus_lmbda, layout),
                *data,
                adv_rows,
                ret_rows,
                err,
                be.one(layout),
                validate,
            )
        if validate and err.any():
            diagnose(values, done, terminated, coefs)
        return be.deliver((advantage, ret), out)


def _check_not_rolling(
    estimator: str, gamma: object, lmbda: object, done: Tensor, layout: Layout
) -> None:
    """``rolling_gamma=False`` where TorchRL computes it, and computes it right."""
    if not (is_per_step(gamma, layout) or is_per_step(lmbda, layout)):
        coefs = "gamma" if estimator == "td1" else "gamma or lmbda"
        raise ArgumentError(
            "rolling_gamma",
            f"expected a per-step {coefs} (a tensor of shape {tuple(layout.shape)}) with "
            f"rolling_gamma=False, which ties each step's coefficient to the rest of its "
            f"trajectory (TorchRL raises too), got none; pass rolling_gamma=None",
        )
    if estimator == "td1":
        cut = ~done.select(layout.time_dim, -1)
        if bool(cut.any()):
            where = tuple(int(i) for i in cut.nonzero()[0].tolist())
            raise ArgumentError(
                "rolling_gamma",
                f"expected done at the last step of every trajectory for td1 with "
                f"rolling_gamma=False, got a trajectory the batch cuts (done=False at the last "
                f"step, index {where} of the other dims): TorchRL 0.14.1's td1_return_estimate "
                f"silently drops its bootstrap there; td_lambda(gamma, 1.0, ..., "
                f"rolling_gamma=False) bootstraps it",
            )


def _td_lambda_torch(
    gamma: Coef,
    lmbda: Coef,
    one_minus_lmbda: Coef,
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
    mixed = (be.coef_time_major(one_minus_lmbda, layout) * nv).contiguous()
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


def _td_lambda_fixed_torch(
    gamma: Coef,
    lmbda: Coef,
    one_minus_lmbda: Coef,
    value: Tensor,
    next_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor,
    layout: Layout,
) -> tuple[Tensor, Tensor]:
    """``rolling_gamma=False``: Gₖ is the λ-return of steps k, k+1, … with γₖ, λₖ throughout.

    TorchRL runs one reverse loop per start step k (T²/2 iterations). Here one reverse loop over
    t carries all of them at once: ``acc[k]`` is start step k's running return, updated for every
    k ≤ t with k's own coefficients, in TorchRL's operation order (so the numbers are its own).
    A done step resets each running return to Ṽₜ, as TorchRL's ``g·(1 − d) + Ṽ·d`` does.
    """
    v, nv, r, d, k = (
        be.time_major(x, layout) for x in (value, next_value, reward, done, terminated)
    )
    g, lm, oml = (be.coef_time_major(c, layout) for c in (gamma, lmbda, one_minus_lmbda))
    nv = torch.where(k, 0.0, nv)
    n = layout.n_steps

    def upto(c: Tensor, t: int) -> Tensor:  # the coefficients of start steps 0 … t
        return c if c.ndim == 0 else c[: t + 1]

    ret: list[Tensor] = []
    acc = nv[-1].expand(n, *nv.shape[1:])
    boot = acc
    for t in range(n - 1, -1, -1):
        if t < n - 1:
            boot = torch.where(d[t], nv[t], acc[: t + 1])
        acc = r[t] + upto(g, t) * (upto(oml, t) * nv[t] + upto(lm, t) * boot)
        ret.append(acc[t])
    value_target = torch.stack(ret[::-1])
    advantage = value_target - v
    return be.from_time_major(advantage, layout), be.from_time_major(value_target, layout)
