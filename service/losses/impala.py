"""IMPALA's V-trace actor-critic loss (DI-engine's ``vtrace_error_*`` maths, TorchRL's layout).

See "IMPALA: Scalable Distributed Deep-RL with Importance Weighted Actor-Learner Architectures"
by Espeholt et al. (https://arxiv.org/abs/1802.01561).

Layout (TorchRL's, time at dim -2 of value-like tensors): ``dist`` has batch shape ``[*B, T]``;
``action`` ``[*B, T]`` (categorical) or ``[*B, T, A]``; ``sample_log_prob`` ``[*B, T]``;
``state_value``, ``next_state_value``, ``reward``, ``weight`` ``[*B, T, 1]``; ``done``,
``terminated`` bool ``[*B, T, 1]``. DI-engine's inputs are time-major ``(T, B)`` with a
``(T + 1, B)`` value: ``state_value = value[:-1]``, ``next_state_value = value[1:]`` (moved to
``[B, T, 1]``) and all-False ``done`` reproduce it.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch import distributions as D

from service.errors import ArgumentError
from service.estimators import vtrace
from service.losses import _common as C

__all__ = ["impala_loss"]


def _pg_advantage(
    gamma: float,
    rho_pg: Tensor,
    vs: Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor,
) -> Tensor:
    """DI-engine's ``vtrace_advantage`` with TorchRL's episode ends.

    ``A_t = ρ̂_pg,t(r_t + γ·v̂_{t+1} − V_t)``, ``v̂_{t+1} = vs_{t+1}``, or ``V′_t`` at a done or the
    last step, and 0 at a terminated step.
    """
    zero = torch.zeros((), dtype=state_value.dtype, device=state_value.device)
    vs_next = torch.cat([vs[..., 1:, :], next_state_value[..., -1:, :]], dim=-2)
    bootstrap = torch.where(done, next_state_value, vs_next)
    bootstrap = torch.where(terminated, zero, bootstrap)
    return rho_pg * (reward + gamma * bootstrap - state_value)


def _vtrace(
    gamma: float,
    log_pi: Tensor,
    log_mu: Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    rho_thresh: float = 1.0,
    c_thresh: float = 1.0,
    *,
    lmbda: float = 1.0,
    rho_pg_thresh: float | None = None,
) -> tuple[Tensor, Tensor]:
    """``(advantage, vs)``, inputs ``[*B, T, 1]``, no grad: vs from ``service.estimators.vtrace``.

    The estimator's policy-gradient advantage at λ < 1 follows rlax (bootstrap
    ``λ·vs + (1 − λ)·V′``), so DI-engine's advantage is recomputed here from vs. At λ = 1 and
    ρ̄_pg = ρ̄ both are TorchRL's ``vtrace_advantage_estimate``.
    """
    if terminated is None:
        terminated = done
    if rho_pg_thresh is None:
        rho_pg_thresh = rho_thresh
    with torch.no_grad():
        _, vs = vtrace(
            gamma, log_pi, log_mu, state_value, next_state_value, reward, done, terminated,
            rho_thresh, c_thresh, lmbda=lmbda, rho_pg_thresh=rho_pg_thresh,
        )  # fmt: skip
        rho_pg = (log_pi - log_mu).exp().clamp_max(rho_pg_thresh)
        advantage = _pg_advantage(
            gamma, rho_pg, vs, state_value, next_state_value, reward, done, terminated
        )
    return advantage, vs


def _check_threshold(name: str, value: object, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ArgumentError(name, f"expected a float > 0, got {value!r}")
    return float(value)


def impala_loss(
    dist: D.Distribution,
    action: Tensor,
    sample_log_prob: Tensor,
    state_value: Tensor,
    next_state_value: Tensor,
    reward: Tensor,
    done: Tensor,
    terminated: Tensor | None = None,
    *,
    gamma: float = 0.99,
    lmbda: float = 1.0,
    rho_thresh: float = 1.0,
    c_thresh: float = 1.0,
    rho_pg_thresh: float | None = None,
    weight: Tensor | None = None,
    valid: Tensor | None = None,
    entropy_bonus: bool = True,
    entropy_coeff: float = 0.01,
    critic_coeff: float = 1.0,
    samples_mc_entropy: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """V-trace policy-gradient, value and entropy losses (DI-engine's ``vtrace_error_*``).

    With ``vs`` and ``A`` from the V-trace recursion (computed without gradient, see below) and
    weights ``w`` (default 1)::

        loss_objective = −mean(log π(a_t)·A_t·w_t)
        loss_critic    = critic_coeff · mean((V_t − vs_t)²·w_t)        (no ½, as DI-engine)
        loss_entropy   = −entropy_coeff · mean(H[π_t]·w_t)

    V-trace (Espeholt et al., eq. 1; DI-engine's λ-variant; TorchRL's episode ends):
    ``ρ = π/μ``, ``ρ̂ = min(ρ, ρ̄)``, ``ĉ = λ·min(ρ, c̄)``, ``ρ̂_pg = min(ρ, ρ̄_pg)``;
    ``(vs − V)_t = ρ̂_t(r_t + γ(1 − k_t)V′_t − V_t) + γ(1 − d_t)ĉ_t(vs − V)_{t+1}``;
    ``A_t = ρ̂_pg,t(r_t + γ(1 − k_t)v̂_{t+1} − V_t)``, ``v̂_{t+1} = vs_{t+1}``, or ``V′_t`` at a
    done (``d``) or the last step. ``terminated`` (``k``, default ``done``) stops
    bootstrapping; ``done`` cuts the trace (a truncation bootstraps from ``V′``). A NaN
    ``V′`` is accepted exactly where it is unused (terminated steps).

    Defaults follow TorchRL (γ 0.99, thresholds 1, ``entropy_coeff`` 0.01, ``critic_coeff`` 1)
    and the paper (λ = 1); DI-engine's defaults are λ 0.95 with its own weights — pass them
    explicitly for DI-engine parity.

    Args:
        dist: current policy, batch ``[*B, T]``.
        action: ``[*B, T]`` integer (categorical) or ``[*B, T, A]``.
        sample_log_prob: behaviour log-prob ``log μ(a)`` ``[*B, T]``, no grad.
        state_value: current critic ``V(s_t)`` ``[*B, T, 1]`` (differentiable).
        next_state_value: ``V(s_{t+1})`` ``[*B, T, 1]`` (used without gradient).
        reward: ``r_t`` ``[*B, T, 1]``.
        done, terminated: bool ``[*B, T, 1]``.
        gamma, lmbda: discount γ ∈ [0, 1] and trace λ ∈ [0, 1].
        rho_thresh, c_thresh, rho_pg_thresh: ρ̄, c̄, ρ̄_pg (> 0; ``rho_pg_thresh=None`` → ρ̄).
        weight: optional per-step weights ``[*B, T, 1]`` (DI-engine's ``weight``).
        valid: optional bool ``[*B, T, 1]``: the steps ``kl_approx``, ``mean_ratio`` and
            ``explained_variance`` cover (a padded batch; its ``weight`` zeroes the padding in
            the weighted means).
        entropy_bonus, entropy_coeff, critic_coeff: loss weights.
        samples_mc_entropy, generator: Monte-Carlo entropy for tanh-normal.

    Returns:
        ``loss_objective``, ``loss_critic``, [``entropy`` (``mean(H·w)``), ``loss_entropy``],
        ``kl_approx`` (``mean(log μ − log π)``), ``mean_ratio``, ``explained_variance``
        (of ``vs`` by ``V``, pooled), ``loss`` (sum of the ``loss_*`` entries) — all 0-d.
    """
    dist = C.check_distribution(dist)
    batch = dist.batch_shape
    if len(batch) < 1:
        raise ArgumentError("dist", f"expected batch shape [*B, T], got {tuple(batch)}")
    value_shape = (*batch, 1)
    C.check_tensor("state_value", state_value, value_shape)
    dtype = state_value.dtype
    C.check_tensor("sample_log_prob", sample_log_prob, batch, dtype)
    C.check_no_grad("sample_log_prob", sample_log_prob)
    C.check_tensor("next_state_value", next_state_value, value_shape, dtype)
    C.check_tensor("reward", reward, value_shape, dtype)
    C.check_tensor("done", done, value_shape, kind="bool")
    if terminated is not None:
        C.check_tensor("terminated", terminated, value_shape, kind="bool")
    if weight is not None:
        C.check_tensor("weight", weight, value_shape, dtype)
    if valid is not None:
        C.check_tensor("valid", valid, value_shape, kind="bool")
    for name, value in (("gamma", gamma), ("lmbda", lmbda)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ArgumentError(name, f"expected a float in [0, 1], got {value!r}")
    rho_thresh = _check_threshold("rho_thresh", rho_thresh)
    c_thresh = _check_threshold("c_thresh", c_thresh)
    rho_pg_thresh = _check_threshold("rho_pg_thresh", rho_pg_thresh, allow_none=True)
    C.check_nonneg("entropy_coeff", entropy_coeff)
    C.check_nonneg("critic_coeff", critic_coeff)
    C.check_samples("samples_mc_entropy", samples_mc_entropy)
    for name, value in (("state_value", state_value), ("reward", reward)):
        if not bool(torch.isfinite(value).all()):
            raise ArgumentError(name, "expected finite values")
    if terminated is not None and bool((terminated & ~done).any()):
        raise ArgumentError("terminated", "expected terminated to imply done at every step")
    live = ~(done if terminated is None else terminated)
    if not bool(torch.isfinite(next_state_value[live]).all()):
        raise ArgumentError("next_state_value", "expected finite values at non-terminated steps")

    log_prob = C.current_log_prob(dist, action, dtype)
    advantage, vs = _vtrace(
        float(gamma),
        log_prob.detach().unsqueeze(-1),
        sample_log_prob.unsqueeze(-1),
        state_value.detach(),
        next_state_value.detach(),
        reward,
        done,
        terminated,
        rho_thresh,
        c_thresh,
        lmbda=float(lmbda),
        rho_pg_thresh=rho_pg_thresh,
    )
    advantage, vs = advantage.detach(), vs.detach()
    w = torch.ones_like(state_value) if weight is None else weight
    out: dict[str, Tensor] = {
        "loss_objective": -(log_prob.unsqueeze(-1) * advantage * w).mean(),
        "loss_critic": critic_coeff * ((state_value - vs).pow(2) * w).mean(),
    }
    if entropy_bonus:
        ent, heads = C.entropy_terms(dist, samples_mc_entropy, generator)
        out["entropy"] = (ent.detach() * w).mean()
        out |= {name: (part.detach() * w).mean() for name, part in heads.items()}
        out["loss_entropy"] = -entropy_coeff * (ent * w).mean()
    with torch.no_grad():
        # On a padded batch (`valid`) these metrics cover the valid steps only.
        keep = (lambda x: x) if valid is None else (lambda x: x[valid.squeeze(-1)])
        out["kl_approx"] = keep(sample_log_prob - log_prob.detach()).mean()
        out["mean_ratio"] = keep((log_prob.detach() - sample_log_prob).exp()).mean()
        if valid is None:
            out["explained_variance"] = C.explained_variance(vs, state_value)
        else:
            out["explained_variance"] = C.explained_variance(vs[valid], state_value[valid])
    out["loss"] = C.total(out)
    return out
