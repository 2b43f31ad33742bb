"""Generalised advantage estimation (GAE), TorchRL 0.14.1 semantics."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

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
    operand,
    raise_if_flagged,
)
from service.estimators.standardize import EPS_GAE, standardize

__all__ = ["gae"]


def gae(
    gamma: float | Tensor,
    lmbda: float | Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    *,
    time_dim: int = DEFAULT_TIME_DIM,
    average_gae: bool = False,
    differentiable: bool = False,
    validate: bool = True,
    out: be.Out = None,
    _backend: be.Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimate and its value target (TD(λ) return).

    With k = terminated, d = done, t = 0 … T−1 along ``time_dim``::

        δₜ = rₜ + γₜ (1 − kₜ) V′ₜ − Vₜ
        Aₜ = δₜ + γₜ λₜ (1 − dₜ) Aₜ₊₁,   A_T = 0 (the last step is always a boundary)
        value_targetₜ = Aₜ + Vₜ

    ``terminated`` zeroes the bootstrap (selected, never multiplied, so V′ may be NaN there);
    ``done`` cuts the recursion, so a truncation (d ∧ ¬k) bootstraps from V′ₜ and stops.
    See "High-Dimensional Continuous Control Using Generalized Advantage Estimation" by
    Schulman et al. (https://arxiv.org/abs/1506.02438). Drop-in for TorchRL's
    ``generalized_advantage_estimate`` plus the ``GAE`` class's ``average_gae`` and
    ``differentiable`` options.

    Args:
        gamma: discount γₜ in [0, 1]: a float, a one-element tensor (``torch.tensor([0.95])``,
            used at its own dtype's value, as TorchRL does), or a tensor of the inputs' shape (or
            their rank with size-1 dims, e.g. ``[B, 1, 1]``); γₜ discounts the step t → t+1.
        lmbda: λₜ in [0, 1], as ``gamma``.
        state_value: Vₜ = V(sₜ), shape ``[*B, T, *F]``, floating. Value tensors may mix float
            dtypes: all are promoted (torch's rules) and the outputs have the promoted dtype.
        next_state_value: V′ₜ = V(sₜ₊₁) for the same steps; only read where not terminated.
        reward: rₜ received on the step t → t+1 (may also be integer or bool: promoted).
        done: bool, the trajectory ends after step t (termination or truncation).
        terminated: bool, sₜ₊₁ is terminal; must imply ``done``. Defaults to ``done``.
        time_dim: the time dimension. Left at its default (-2), a 2-D input whose last dim is
            not 1 is refused as ambiguous: pass ``time_dim=-1`` for ``[B, T]``.
        average_gae: standardise the advantage over the whole tensor (unbiased std, clamped
            at 1e-4), like TorchRL's ``GAE(average_gae=True)``.
        differentiable: let gradients flow into ``state_value``, ``next_state_value`` and
            ``reward``, as through TorchRL's functional (and ``GAE(differentiable=True)``
            without a value network); γ and λ are detached. When False (the default) the
            outputs never require grad.
        validate: run the data checks (finite values, terminated ⇒ done, per-step γ/λ in
            [0, 1]); shape, dtype and scalar checks always run.
        out: an ``(advantage, value_target)`` pair of contiguous tensors of the result's shape,
            dtype and device to write into and return (no allocation per call; not with
            autograd, and sharing no memory with the inputs).

    Returns:
        ``(advantage, value_target)``, each of the inputs' shape, dtype and device, covering
        the same steps t = 0 … T−1.
    """
    if (
        type(gamma) is float
        and type(lmbda) is float
        and out is None
        and not average_gae
        and (_backend == "auto" or _backend == "numba")
        and 0.0 <= gamma <= 1.0
        and 0.0 <= lmbda <= 1.0
    ):
        values = (state_value, next_state_value, reward)
        flags = (done, done if terminated is None else terminated)
        fast = be.fast_rows(time_dim, values, flags)
        if fast is not None:
            return _gae_small(gamma, lmbda, values, flags, fast, validate)
    layout = check_inputs(
        {"state_value": state_value, "next_state_value": next_state_value, "reward": reward},
        {"done": done, "terminated": terminated},
        time_dim,
    )
    gamma_c = check_coef("gamma", gamma, layout)
    lmbda_c = check_coef("lmbda", lmbda, layout)
    if terminated is None:
        terminated = done
    # TorchRL forms the product λ·γ first: in double for Python floats, else with torch's
    # promotion and rounding on the tensors as given (two float32 tensors: a float32 product).
    gamma_lmbda: Coef = (
        derive(operand(lmbda, layout) * operand(gamma, layout), layout)
        if isinstance(gamma, Tensor) or isinstance(lmbda, Tensor)
        else float(lmbda_c * gamma_c)
    )
    needs_grad = be.wants_grad(differentiable, state_value, next_state_value, reward)
    backend = be.choose(_backend, layout, needs_grad)
    be.check_out(out, layout, needs_grad, (state_value, next_state_value, reward, done, terminated))
    with torch.set_grad_enabled(needs_grad):
        value, next_value, reward = be.grad_inputs(
            layout, needs_grad, state_value, next_state_value, reward
        )
        if validate and backend == "torch":
            raise_if_flagged(
                {"state_value": value, "next_state_value": next_value, "reward": reward},
                done,
                terminated,
                {"gamma": gamma_c, "lmbda": lmbda_c},
            )
        run = _gae_numba if backend == "numba" else _gae_torch
        advantage, value_target = run(
            gamma_c, lmbda_c, gamma_lmbda, value, next_value, reward, done, terminated, layout,
            validate, out,
        )  # fmt: skip
        if average_gae:
            advantage = standardize(advantage, EPS_GAE, "average_gae")
    return be.deliver((advantage, value_target), out)


def _gae_small(
    gamma: float,
    lmbda: float,
    values: tuple[Tensor, Tensor, Tensor],
    flags: tuple[Tensor, Tensor],
    fast: be.FastRows,
    validate: bool,
) -> tuple[Tensor, Tensor]:
    """The small-call path (``be.fast_rows``): the serial scalar kernel, straight on the inputs'
    memory, with the same numbers and the same refusals as ``_gae_numba``."""
    n_rows, n_steps = fast
    value = values[0]
    advantage = torch.empty_like(value)
    value_target = torch.empty_like(value)
    err = np.zeros(n_rows, dtype=np.int32)
    f32 = value.dtype is torch.float32
    _kernels.get_small("gae_scalar", "float32" if f32 else "float64")(
        # λ·γ in double, as TorchRL forms it for floats; ctypes rounds to float32 as numpy does
        gamma,
        lmbda * gamma,
        *(x.data_ptr() for x in (*values, *flags, advantage, value_target)),
        err.ctypes.data,
        n_rows,
        n_steps,
        validate,
    )
    if validate and np.count_nonzero(err):
        names = ("state_value", "next_state_value", "reward")
        diagnose(dict(zip(names, values, strict=True)), *flags, {"gamma": gamma, "lmbda": lmbda})
    return advantage, value_target


def _gae_numba(
    gamma: Coef,
    lmbda: Coef,
    gamma_lmbda: Coef,
    value: Tensor,
    next_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor,
    layout: Layout,
    validate: bool,
    out: be.Out,
) -> tuple[Tensor, Tensor]:
    if validate:
        check_coef_ranges({"gamma": gamma, "lmbda": lmbda})
    advantage, adv_rows = be.new_rows(layout, None if out is None else out[0])
    value_target, target_rows = be.new_rows(layout, None if out is None else out[1])
    err = np.zeros(layout.n_rows, dtype=np.int32)
    data = [be.rows(x, layout) for x in (value, next_value, reward, done, terminated)]
    if be.scalar_fast_path(layout, gamma, gamma_lmbda):
        _kernels.get("gae_scalar", be.parallel(layout))(
            be.scalar(gamma, layout),
            be.scalar(gamma_lmbda, layout),
            *(x[..., 0] for x in (*data, adv_rows, target_rows)),
            err,
            validate,
        )
    else:
        _kernels.get("gae", be.parallel(layout))(
            be.coef_rows(gamma, layout),
            be.coef_rows(gamma_lmbda, layout),
            *data,
            adv_rows,
            target_rows,
            err,
            be.one(layout),
            validate,
        )
    if validate and err.any():
        values = {"state_value": value, "next_state_value": next_value, "reward": reward}
        diagnose(values, done, terminated, {"gamma": gamma, "lmbda": lmbda})
    return advantage, value_target


def _gae_torch(
    gamma: Coef,
    lmbda: Coef,
    gamma_lmbda: Coef,
    value: Tensor,
    next_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor,
    layout: Layout,
    validate: bool,
    out: be.Out,
) -> tuple[Tensor, Tensor]:
    del lmbda, validate, out  # λ only enters through γλ; validation ran before; copied later
    v, nv, r, d, k = (
        be.time_major(x, layout) for x in (value, next_value, reward, done, terminated)
    )
    g = be.coef_time_major(gamma, layout)
    gl = be.coef_time_major(gamma_lmbda, layout)
    # Contiguous time-major copies make every per-step slice below a dense vector.
    delta = ((r + g * torch.where(k, 0.0, nv)) - v).contiguous()
    discount = torch.where(d, 0.0, gl).contiguous()
    steps: list[Tensor] = [delta[-1]]
    for t in range(layout.n_steps - 2, -1, -1):
        steps.append(delta[t] + steps[-1] * discount[t])
    advantage = torch.stack(steps[::-1])
    value_target = advantage + v
    return be.from_time_major(advantage, layout), be.from_time_major(value_target, layout)
