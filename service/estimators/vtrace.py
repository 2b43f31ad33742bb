"""V-trace off-policy targets and policy-gradient advantages (IMPALA), with rlax's λ extension."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from service.estimators import _backend as be
from service.estimators import _kernels, threads
from service.estimators._checks import (
    DEFAULT_TIME_DIM,
    Coef,
    Layout,
    check_coef,
    check_coef_ranges,
    check_inputs,
    check_log_probs,
    check_threshold,
    check_threshold_ranges,
    diagnose,
    raise_if_flagged,
)
from service.estimators.standardize import EPS_ADV_VTRACE, standardize

__all__ = ["vtrace"]


def vtrace(
    gamma: float | Tensor,
    log_pi: Tensor,
    log_mu: Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    rho_thresh: float | Tensor = 1.0,
    c_thresh: float | Tensor = 1.0,
    time_dim: int = DEFAULT_TIME_DIM,
    *,
    lmbda: float | Tensor = 1.0,
    rho_pg_thresh: float | Tensor | None = None,
    average_adv: bool = False,
    differentiable: bool = False,
    validate: bool = True,
    out: be.Out = None,
    _backend: be.Backend = "auto",
) -> tuple[Tensor, Tensor]:
    """V-trace policy-gradient advantage and value target vs.

    With ρₜ = exp(log_piₜ − log_muₜ), ρ̂ₜ = min(ρ̄, ρₜ), cₜ = λₜ·min(c̄, ρₜ),
    ρ̂ᵖᵍₜ = min(ρ̄_pg, ρₜ), Ṽₜ = (1 − kₜ) V′ₜ and Bₜ = "dₜ or t = T−1"::

        vsₜ − Vₜ = ρ̂ₜ (rₜ + γₜ Ṽₜ − Vₜ) + γₜ (1 − dₜ) cₜ (vsₜ₊₁ − Vₜ₊₁)   (0 after a boundary)
        qₜ = Ṽₜ if Bₜ else λₜ vsₜ₊₁ + (1 − λₜ) Ṽₜ
        advantageₜ = ρ̂ᵖᵍₜ (rₜ + γₜ (1 − kₜ) qₜ − Vₜ)

    With the defaults (λ = 1, ρ̄_pg = ρ̄) this is TorchRL 0.14.1's ``vtrace_advantage_estimate``
    (qₜ = vsₜ₊₁; same positional order, ``time_dim`` included). λ < 1 follows rlax's
    ``vtrace_td_error_and_advantage`` (c = λ·min(c̄, ρ), q bootstrap λ·vsₜ₊₁ + (1 − λ)·V′ₜ); vs
    then also equals DI-engine's ``vtrace_nstep_return``, whose policy-gradient advantage
    differs only by bootstrapping on vsₜ₊₁ unmixed. On-policy
    with ρ̄ = c̄ = 1 the advantage is GAE(λ)'s. See "IMPALA: Scalable Distributed Deep-RL with
    Importance Weighted Actor-Learner Architectures" by Espeholt et al.
    (https://arxiv.org/abs/1802.01561).

    Args:
        gamma: γₜ in [0, 1]: a float or a tensor (shapes as in ``gae``).
        log_pi: log π(aₜ|sₜ) under the current (target) policy. (TorchRL's docstring swaps
            log_pi and log_mu; its code, and this function, use log_pi for the current one.)
            −inf is accepted (an action the target policy cannot take): ρₜ = 0, as in TorchRL.
        log_mu: log μ(aₜ|sₜ) under the behaviour policy that collected the data; finite (it
            took the action).
        state_value: Vₜ, shape ``[*B, T, *F]``, floating. Value tensors and log-probabilities
            may mix float dtypes: all are promoted (torch's rules), as are the outputs.
        next_state_value: V′ₜ = V(sₜ₊₁); only read where not terminated.
        reward: rₜ (may be integer or bool: promoted).
        done: bool, the trajectory ends after step t (cuts the trace).
        terminated: bool, sₜ₊₁ is terminal; must imply ``done``. Defaults to ``done``.
        rho_thresh: ρ̄ > 0, clips the importance weight in the vs recursion: a float or a
            tensor (per step, ``[*B, T, *F]``, or any shape ``gamma`` takes).
        c_thresh: c̄ > 0, clips the trace coefficient; as ``rho_thresh``.
        time_dim: see ``gae``.
        lmbda: λₜ in [0, 1] (float or tensor); 1 gives IMPALA/TorchRL V-trace.
        rho_pg_thresh: ρ̄_pg > 0 for the policy-gradient advantage, as ``rho_thresh``;
            defaults to ``rho_thresh``.
        average_adv: standardise the advantage over the whole tensor (unbiased std clamped at
            1e-5), like TorchRL's ``VTrace(average_adv=True)``.
        differentiable: gradients flow into ``state_value``, ``next_state_value`` and
            ``reward``, as through TorchRL's functional; the importance weights (log_pi,
            log_mu), coefficients and thresholds are detached, as IMPALA treats them.
        validate: run the data checks (see ``gae``; log_mu finite, log_pi finite or −inf,
            threshold tensors finite and > 0).
        out: an output pair to write into and return (see ``gae``).

    Returns:
        ``(advantage, vs)`` for steps t = 0 … T−1, inputs' shape and device, in the promoted
        dtype.
    """
    if (
        type(gamma) is float
        and type(lmbda) is float
        and type(rho_thresh) is float
        and type(c_thresh) is float
        and (rho_pg_thresh is None or type(rho_pg_thresh) is float)
        and out is None
        and not average_adv
        and (_backend == "auto" or _backend == "numba")
        and 0.0 <= gamma <= 1.0
        and 0.0 <= lmbda <= 1.0
        and 0.0 < rho_thresh < math.inf
        and 0.0 < c_thresh < math.inf
        and (rho_pg_thresh is None or 0.0 < rho_pg_thresh < math.inf)
    ):
        values = (state_value, next_state_value, reward, log_pi, log_mu)
        flags = (done, done if terminated is None else terminated)
        fast = be.fast_rows(time_dim, values, flags)
        if fast is not None and fast[0] * fast[1] <= threads.TORCH_SERIAL_ELEMENTS:
            rho_pg = rho_thresh if rho_pg_thresh is None else rho_pg_thresh
            thresholds = (rho_thresh, c_thresh, rho_pg)
            return _vtrace_small(gamma, lmbda, thresholds, values, flags, fast, validate)
    layout = check_inputs(
        {
            "state_value": state_value,
            "next_state_value": next_state_value,
            "reward": reward,
            "log_pi": log_pi,
            "log_mu": log_mu,
        },
        {"done": done, "terminated": terminated},
        time_dim,
    )
    gamma = check_coef("gamma", gamma, layout)
    lmbda = check_coef("lmbda", lmbda, layout)
    thresholds = {"rho_thresh": check_threshold("rho_thresh", rho_thresh, layout)}
    thresholds["c_thresh"] = check_threshold("c_thresh", c_thresh, layout)
    thresholds["rho_pg_thresh"] = (
        thresholds["rho_thresh"]
        if rho_pg_thresh is None
        else check_threshold("rho_pg_thresh", rho_pg_thresh, layout)
    )
    if terminated is None:
        terminated = done
    needs_grad = be.wants_grad(differentiable, state_value, next_state_value, reward)
    backend = be.choose(_backend, layout, needs_grad)
    be.check_out(
        out, layout, needs_grad,
        (state_value, next_state_value, reward, log_pi, log_mu, done, terminated),
    )  # fmt: skip
    with torch.set_grad_enabled(needs_grad):
        value, next_value, reward = be.grad_inputs(
            layout, needs_grad, state_value, next_state_value, reward
        )
        lp, lq = be.grad_inputs(layout, False, log_pi, log_mu)
        values = {
            "state_value": value,
            "next_state_value": next_value,
            "reward": reward,
            "log_pi": lp,
            "log_mu": lq,
        }
        coefs = {"gamma": gamma, "lmbda": lmbda}
        if backend == "numba":
            advantage, vs = _vtrace_numba(values, done, terminated, coefs, thresholds, layout,
                                          validate, out)  # fmt: skip
        else:
            if validate:
                raise_if_flagged(values, done, terminated, coefs, thresholds)
            advantage, vs = _vtrace_torch(values, done, terminated, coefs, thresholds, layout)
        if average_adv:
            advantage = standardize(advantage, EPS_ADV_VTRACE, "average_adv")
    return be.deliver((advantage, vs), out)


def _vtrace_small(
    gamma: float,
    lmbda: float,
    thresholds: tuple[float, float, float],
    values: tuple[Tensor, Tensor, Tensor, Tensor, Tensor],
    flags: tuple[Tensor, Tensor],
    fast: be.FastRows,
    validate: bool,
) -> tuple[Tensor, Tensor]:
    """The small-call path (``be.fast_rows``, at most ``TORCH_SERIAL_ELEMENTS``): torch's ``exp``
    in the calling thread, then the serial scalar kernel's pointer entry point; the same numbers
    and the same refusals as ``_vtrace_numba``."""
    n_rows, n_steps = fast
    value, _, _, log_pi, log_mu = values
    ratio = log_pi - log_mu  # few elements: torch runs these in the calling thread
    if validate and not math.isfinite(ratio.sum()):
        check_log_probs(log_pi, log_mu)
    ratio.exp_()
    f32 = value.dtype is torch.float32
    # 1 − λ in the data's dtype, as the checked path forms it
    one_minus_lmbda = float(np.float32(1) - np.float32(lmbda)) if f32 else 1.0 - lmbda
    advantage = torch.empty_like(value)
    vs = torch.empty_like(value)
    err = np.zeros(n_rows, dtype=np.int32)
    _kernels.get_small("vtrace_scalar", "float32" if f32 else "float64")(
        gamma,
        lmbda,
        one_minus_lmbda,
        *thresholds,
        *(x.data_ptr() for x in (ratio, *values[:3], *flags, advantage, vs)),
        err.ctypes.data,
        n_rows,
        n_steps,
        validate,
    )
    if validate and np.count_nonzero(err):
        names = ("state_value", "next_state_value", "reward", "log_pi", "log_mu")
        coefs = {"gamma": gamma, "lmbda": lmbda}
        limits = dict(zip(("rho_thresh", "c_thresh", "rho_pg_thresh"), thresholds, strict=True))
        diagnose(dict(zip(names, values, strict=True)), *flags, coefs, limits)
    return advantage, vs


def _vtrace_numba(
    values: dict[str, Tensor],
    done: Tensor,
    terminated: Tensor,
    coefs: dict[str, Coef],
    thresholds: dict[str, Coef],
    layout: Layout,
    validate: bool,
    out: be.Out,
) -> tuple[Tensor, Tensor]:
    if validate:
        check_coef_ranges(coefs)
        check_threshold_ranges(thresholds)
    advantage, adv_rows = be.new_rows(layout, None if out is None else out[0])
    vs, vs_rows = be.new_rows(layout, None if out is None else out[1])
    err = np.zeros(layout.n_rows, dtype=np.int32)
    names = ("state_value", "next_state_value", "reward")
    data = [be.rows(values[name], layout) for name in names]
    flags = [be.rows(done, layout), be.rows(terminated, layout)]
    # torch's vectorised exp, not a scalar libm call per step: the same ratios as TorchRL's.
    parallel = be.parallel(layout)
    if parallel:
        ratio = values["log_pi"] - values["log_mu"]
        total = float(ratio.sum()) if validate else 0.0
        ratio.exp_()
    else:  # in the calling thread, never waiting for torch's pool (``threads`` point 4)
        ratio, total = be.serial_exp(values["log_pi"], values["log_mu"], layout)
    # One reduction, no temporary: the sum is finite unless a log-ratio is not (or, for absurd
    # magnitudes, the sum overflows); then the exact check decides (log_pi = −inf is fine).
    if validate and not math.isfinite(total):
        check_log_probs(values["log_pi"], values["log_mu"])
    names = ("rho_thresh", "c_thresh", "rho_pg_thresh")
    if be.scalar_fast_path(layout, coefs["gamma"], coefs["lmbda"], *thresholds.values()):
        lmbda = be.scalar(coefs["lmbda"], layout)
        _kernels.get("vtrace_scalar", parallel)(
            be.scalar(coefs["gamma"], layout),
            lmbda,
            be.one(layout) - lmbda,  # in the data's dtype, as the general kernel's 1 − λ
            *(x[..., 0] for x in (be.rows(ratio, layout), *data, *flags)),
            *(be.scalar(thresholds[name], layout) for name in names),
            adv_rows[..., 0],
            vs_rows[..., 0],
            err,
            validate,
        )
    else:
        _kernels.get("vtrace", parallel)(
            be.coef_rows(coefs["gamma"], layout),
            be.coef_rows(coefs["lmbda"], layout),
            be.rows(ratio, layout),
            *data,
            *flags,
            *(be.coef_rows(thresholds[name], layout) for name in names),
            be.one(layout),
            adv_rows,
            vs_rows,
            err,
            validate,
        )
    if validate and err.any():
        diagnose(values, done, terminated, coefs, thresholds)
    return advantage, vs


def _vtrace_torch(
    values: dict[str, Tensor],
    done: Tensor,
    terminated: Tensor,
    coefs: dict[str, Coef],
    thresholds: dict[str, Coef],
    layout: Layout,
) -> tuple[Tensor, Tensor]:
    v, nv, r, lp, lq, d, k = (
        be.time_major(x, layout)
        for x in (
            values["state_value"],
            values["next_state_value"],
            values["reward"],
            values["log_pi"],
            values["log_mu"],
            done,
            terminated,
        )
    )
    g = be.coef_time_major(coefs["gamma"], layout)
    lm = be.coef_time_major(coefs["lmbda"], layout)
    rho_thresh, c_thresh, rho_pg_thresh = (
        be.time_major(c, layout) if isinstance(c, Tensor) else c
        for c in (thresholds["rho_thresh"], thresholds["c_thresh"], thresholds["rho_pg_thresh"])
    )
    rho = (lp - lq).exp()
    nv = torch.where(k, 0.0, nv)
    # TorchRL's order: ρ̂·((r + γṼ) − V), then δ + (γ(1−d)·c)·acc.
    delta = (rho.clamp_max(rho_thresh) * ((r + g * nv) - v)).contiguous()
    trace = (torch.where(d, 0.0, g) * (lm * rho.clamp_max(c_thresh))).contiguous()
    acc: list[Tensor] = [delta[-1]]
    for t in range(layout.n_steps - 2, -1, -1):
        acc.append(delta[t] + trace[t] * acc[-1])
    vs = torch.stack(acc[::-1]) + v
    boundary = d.clone()
    boundary[-1] = True
    vs_next = torch.cat([vs[1:], nv[-1:]])
    q = torch.where(boundary, nv, lm * vs_next + (1 - lm) * nv)
    advantage = rho.clamp_max(rho_pg_thresh) * ((r + g * torch.where(k, 0.0, q)) - v)
    return be.from_time_major(advantage, layout), be.from_time_major(vs, layout)
