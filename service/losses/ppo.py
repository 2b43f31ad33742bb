"""PPO losses: plain surrogate, clipped surrogate, adaptive KL penalty (TorchRL semantics).

See "Proximal Policy Optimization Algorithms" by Schulman et al. (https://arxiv.org/abs/1707.06347).
Pure functions mirroring ``torchrl.objectives.PPOLoss`` / ``ClipPPOLoss`` / ``KLPENPPOLoss``
(0.14.1, ``reduction="mean"``, precomputed advantage): the caller runs the networks and passes
the current distribution, the stored action and behaviour log-prob, the advantage, and (for the
critic term) the current value prediction and the value target.

Shapes: ``dist`` has batch shape ``[*B]``; ``action`` ``[*B]`` (categorical) or ``[*B, A]``;
``sample_log_prob`` ``[*B]``; ``advantage``, ``state_value``, ``value_target``,
``old_state_value`` ``[*B, 1]``. All floating inputs share one dtype. Every output is a 0-d
tensor; ``loss`` is the sum of the ``loss_*`` entries (the thing to backward).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch import distributions as D

from service.distributions import kl_divergence
from service.errors import ArgumentError
from service.losses import _common as C

__all__ = ["clip_epsilon_bounds", "ppo_clip_loss", "ppo_kl_loss", "ppo_loss"]


def _prepare(
    dist: D.Distribution,
    action: Tensor,
    sample_log_prob: Tensor,
    advantage: Tensor,
    state_value: Tensor | None,
    value_target: Tensor | None,
    old_state_value: Tensor | None,
    *,
    entropy_coeff: float,
    critic_coeff: float | None,
    loss_critic_type: str,
    normalize_advantage: bool,
    clip_value: float | None,
    samples_mc_entropy: int,
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Validate; return (log_weight [*B,1], advantage [*B,1], kl_approx, has_critic)."""
    dist = C.check_distribution(dist)
    batch = dist.batch_shape
    value_shape = (*batch, 1)
    C.check_tensor("advantage", advantage, value_shape)
    dtype = advantage.dtype
    C.check_tensor("sample_log_prob", sample_log_prob, batch, dtype)
    C.check_no_grad("sample_log_prob", sample_log_prob)
    C.check_nonneg("entropy_coeff", entropy_coeff)
    C.check_choice("loss_critic_type", loss_critic_type, C.LOSS_CRITIC_TYPES)
    C.check_samples("samples_mc_entropy", samples_mc_entropy)
    has_critic = critic_coeff is not None and C.check_nonneg("critic_coeff", critic_coeff) > 0
    if has_critic:
        C.check_critic_inputs(
            state_value, value_target, old_state_value, clip_value, value_shape, dtype
        )
    log_prob = C.current_log_prob(dist, action, dtype)
    if normalize_advantage:
        advantage = C.standardize(advantage)
    log_weight = (log_prob - sample_log_prob).unsqueeze(-1)
    kl_approx = (sample_log_prob - log_prob).detach().mean()
    return log_weight, advantage, kl_approx, has_critic


def _finish(
    out: dict[str, Tensor],
    dist: D.Distribution,
    state_value: Tensor | None,
    value_target: Tensor | None,
    old_state_value: Tensor | None,
    *,
    has_critic: bool,
    entropy_bonus: bool,
    entropy_coeff: float,
    critic_coeff: float | None,
    loss_critic_type: str,
    clip_value: float | None,
    samples_mc_entropy: int,
    generator: torch.Generator | None,
) -> None:
    if entropy_bonus:
        ent, heads = C.entropy_terms(dist, samples_mc_entropy, generator)
        if not bool(torch.isfinite(ent).all()):
            raise ArgumentError("dist", "entropy is not finite")
        out["entropy"] = ent.detach().mean()
        out |= {name: part.detach().mean() for name, part in heads.items()}
        out["loss_entropy"] = (-entropy_coeff * ent).mean()
    if has_critic:
        assert state_value is not None and value_target is not None
        loss_value, clip_fraction = C.critic_terms(
            state_value, value_target, loss_critic_type, clip_value, old_state_value
        )
        out["loss_critic"] = (critic_coeff * loss_value).mean()
        if clip_fraction is not None:
            out["value_clip_fraction"] = clip_fraction
        out["explained_variance"] = C.explained_variance(value_target, state_value)
    out["loss"] = C.total(out)


def ppo_loss(
    dist: D.Distribution,
    action: Tensor,
    sample_log_prob: Tensor,
    advantage: Tensor,
    state_value: Tensor | None = None,
    value_target: Tensor | None = None,
    *,
    entropy_bonus: bool = True,
    entropy_coeff: float = 0.01,
    critic_coeff: float | None = 1.0,
    loss_critic_type: str = "smooth_l1",
    normalize_advantage: bool = False,
    clip_value: float | None = None,
    old_state_value: Tensor | None = None,
    samples_mc_entropy: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Unregularised PPO surrogate (TorchRL's ``PPOLoss``).

    ``r = exp(log π(a) − log μ(a))``; ``loss_objective = −mean(r·A)``;
    ``loss_entropy = −entropy_coeff·mean(H[π])``;
    ``loss_critic = critic_coeff·mean(d(V_target, V))`` with ``d`` = ``loss_critic_type`` and,
    when ``clip_value`` = c, ``max(d(V_target, V), d(V_target, V_old + clamp(V − V_old, ±c)))``.

    Args:
        dist: current policy distribution (from :func:`service.distributions.make_distribution`),
            batch ``[*B]``, differentiable w.r.t. the actor.
        action: stored actions, ``[*B]`` integer (categorical) or ``[*B, A]``.
        sample_log_prob: behaviour log-prob ``log μ(a)`` ``[*B]``, no grad.
        advantage: ``[*B, 1]`` (used as given: not detached, as in TorchRL).
        state_value: current critic prediction ``V`` ``[*B, 1]``; required unless
            ``critic_coeff`` is ``None`` or 0 (then no critic term, as in TorchRL).
        value_target: ``[*B, 1]``, required with ``state_value``.
        entropy_bonus: add ``entropy``/``loss_entropy``.
        entropy_coeff, critic_coeff: weights (TorchRL defaults 0.01 and 1.0).
        loss_critic_type: ``"l1"``, ``"l2"`` (squared error, no ½) or ``"smooth_l1"``.
        normalize_advantage: standardise the advantage over all its elements first.
        clip_value: value-clip radius (``None``/0: off); needs ``old_state_value`` ``[*B, 1]``
            (the value predictions stored at collection time).
        samples_mc_entropy, generator: Monte-Carlo entropy for tanh-normal (see
            :func:`service.distributions.entropy`).

    Returns:
        ``loss_objective``, ``kl_approx`` (``mean(log μ − log π)``), [``entropy``,
        ``loss_entropy``], [``loss_critic``, ``explained_variance``, ``value_clip_fraction``],
        ``loss`` — all 0-d.

    Raises:
        ValueError: wrong shape/dtype/option; see the module docstring for the layout.
    """
    clip_value = C.check_clip_value(clip_value)
    log_weight, advantage, kl_approx, has_critic = _prepare(
        dist, action, sample_log_prob, advantage, state_value, value_target, old_state_value,
        entropy_coeff=entropy_coeff, critic_coeff=critic_coeff, loss_critic_type=loss_critic_type,
        normalize_advantage=normalize_advantage, clip_value=clip_value,
        samples_mc_entropy=samples_mc_entropy,
    )  # fmt: skip
    out: dict[str, Tensor] = {"loss_objective": -(log_weight.exp() * advantage).mean()}
    out["kl_approx"] = kl_approx
    _finish(
        out, dist, state_value, value_target, old_state_value, has_critic=has_critic,
        entropy_bonus=entropy_bonus, entropy_coeff=entropy_coeff, critic_coeff=critic_coeff,
        loss_critic_type=loss_critic_type, clip_value=clip_value,
        samples_mc_entropy=samples_mc_entropy, generator=generator,
    )  # fmt: skip
    return out


def _clip_bounds(clip_epsilon: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(clip_epsilon, (tuple, list)):
        if len(clip_epsilon) != 2:
            raise ArgumentError(
                "clip_epsilon", f"expected a float or a (low, high) pair, got {clip_epsilon!r}"
            )
        low, high = clip_epsilon
        for name, v in (("clip_epsilon[0]", low), ("clip_epsilon[1]", high)):
            C.check_nonneg(name, v)
        if low >= 1.0:
            raise ArgumentError("clip_epsilon[0]", f"expected < 1, got {low!r}")
        return float(low), float(high)
    eps = C.check_nonneg("clip_epsilon", clip_epsilon)
    if eps >= 1.0:
        raise ArgumentError("clip_epsilon", f"expected < 1, got {clip_epsilon!r}")
    return eps, eps


def clip_epsilon_bounds(options: dict[str, Any]) -> dict[str, Any]:
    """Knobs `clip_epsilon_low`/`clip_epsilon_high` (both or neither) → `clip_epsilon=(low, high)`.

    An asymmetric clip range (DAPO's "clip-higher"): 0 ≤ low < 1 and high ≥ 0.
    """
    options = dict(options)
    low, high = options.pop("clip_epsilon_low", None), options.pop("clip_epsilon_high", None)
    if (low is None) != (high is None):
        raise ArgumentError("clip_epsilon_low / clip_epsilon_high", "set both or neither")
    if low is not None and high is not None:
        if not (0.0 <= low < 1.0 and high >= 0.0):
            raise ArgumentError(
                "clip_epsilon_low/high",
                f"expected 0 ≤ low < 1 and high ≥ 0, got {(low, high)}",
            )
        options["clip_epsilon"] = (low, high)
    return options


def ppo_clip_loss(
    dist: D.Distribution,
    action: Tensor,
    sample_log_prob: Tensor,
    advantage: Tensor,
    state_value: Tensor | None = None,
    value_target: Tensor | None = None,
    *,
    clip_epsilon: float | tuple[float, float] = 0.2,
    entropy_bonus: bool = True,
    entropy_coeff: float = 0.01,
    critic_coeff: float | None = 1.0,
    loss_critic_type: str = "smooth_l1",
    normalize_advantage: bool = False,
    clip_value: bool | float | None = None,
    old_state_value: Tensor | None = None,
    samples_mc_entropy: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Clipped PPO surrogate (TorchRL's ``ClipPPOLoss``).

    ``ℓ = log π(a) − log μ(a)``, ``r = exp(ℓ)``,
    ``r_clip = exp(clamp(ℓ, log(1 − ε_low), log(1 + ε_high)))``;
    ``loss_objective = −mean(min(r·A, r_clip·A))``. Entropy and critic terms as in
    :func:`ppo_loss`.

    Args:
        clip_epsilon: ``ε`` (symmetric) or ``(ε_low, ε_high)`` (asymmetric, "clip-higher");
            ``0 ≤ ε_low < 1``, ``ε_high ≥ 0``.
        clip_value: as in :func:`ppo_loss`; ``True`` means ``clip_epsilon`` (a float only).
        Other arguments: see :func:`ppo_loss`.

    Returns:
        ``loss_objective``, ``clip_fraction`` (fraction of clamped log-ratios), ``kl_approx``,
        [``entropy``, ``loss_entropy``], [``loss_critic``, ``explained_variance``,
        ``value_clip_fraction``], ``ESS``, ``max_ratio``, ``mean_ratio``, ``loss`` — all 0-d.
        ``ESS = (Σw)² / Σw² / N`` over all ``N`` samples, ``w = r`` (TorchRL reduces over dim 0
        only, a per-time-step vector for ``[B, T]`` data; identical for a flat batch).
    """
    low, high = _clip_bounds(clip_epsilon)
    if isinstance(clip_value, bool):
        if clip_value and isinstance(clip_epsilon, (tuple, list)):
            raise ArgumentError(
                "clip_value",
                "True cannot be inferred from an asymmetric clip_epsilon; pass a float",
            )
        clip_value = float(clip_epsilon) if clip_value else None  # type: ignore[arg-type]
    clip_value = C.check_clip_value(clip_value)
    log_weight, advantage, kl_approx, has_critic = _prepare(
        dist, action, sample_log_prob, advantage, state_value, value_target, old_state_value,
        entropy_coeff=entropy_coeff, critic_coeff=critic_coeff, loss_critic_type=loss_critic_type,
        normalize_advantage=normalize_advantage, clip_value=clip_value,
        samples_mc_entropy=samples_mc_entropy,
    )  # fmt: skip
    dtype, device = log_weight.dtype, log_weight.device
    log_low = torch.tensor(-low, dtype=dtype, device=device).log1p()
    log_high = torch.tensor(high, dtype=dtype, device=device).log1p()
    with torch.no_grad():
        lw = log_weight.detach().reshape(-1)
        ess = (2 * lw.logsumexp(0) - (2 * lw).logsumexp(0)).exp() / lw.numel()
    gain1 = log_weight.exp() * advantage
    log_weight_clip = log_weight.clamp(log_low, log_high)
    clip_fraction = (log_weight_clip != log_weight).to(dtype).mean()
    gain2 = log_weight_clip.exp() * advantage
    gain = torch.minimum(gain1, gain2)
    out: dict[str, Tensor] = {
        "loss_objective": -gain.mean(),
        "clip_fraction": clip_fraction,
        "kl_approx": kl_approx,
    }
    _finish(
        out, dist, state_value, value_target, old_state_value, has_critic=has_critic,
        entropy_bonus=entropy_bonus, entropy_coeff=entropy_coeff, critic_coeff=critic_coeff,
        loss_critic_type=loss_critic_type, clip_value=clip_value,
        samples_mc_entropy=samples_mc_entropy, generator=generator,
    )  # fmt: skip
    loss = out.pop("loss")
    with torch.no_grad():
        ratio = log_weight.detach().exp()
        out["ESS"] = ess
        out["max_ratio"] = ratio.max()
        out["mean_ratio"] = ratio.mean()
    out["loss"] = loss
    return out


def ppo_kl_loss(
    dist: D.Distribution,
    action: Tensor,
    sample_log_prob: Tensor,
    advantage: Tensor,
    state_value: Tensor | None = None,
    value_target: Tensor | None = None,
    *,
    behaviour_dist: D.Distribution,
    beta: float | Tensor = 1.0,
    dtarg: float = 0.01,
    increment: float = 2.0,
    decrement: float = 0.5,
    samples_mc_kl: int = 1,
    entropy_bonus: bool = True,
    entropy_coeff: float = 0.01,
    critic_coeff: float | None = 1.0,
    loss_critic_type: str = "smooth_l1",
    normalize_advantage: bool = False,
    clip_value: float | None = None,
    old_state_value: Tensor | None = None,
    samples_mc_entropy: int = 1,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """PPO with an adaptive KL penalty (TorchRL's ``KLPENPPOLoss``); ``beta`` is explicit state.

    ``KL = KL(μ ‖ π)`` per sample (analytic; Monte-Carlo only for tanh-normals with different
    bounds); ``loss_objective = −mean(r·A − β·KL)`` with the *input* β. Then the adaptation
    rule: ``β' = β·increment`` if ``mean(KL) > 1.5·dtarg``, ``β·decrement`` if
    ``mean(KL) < dtarg/1.5``, else ``β``. The caller keeps β per model and feeds ``out["beta"]``
    back on the next call (TorchRL keeps it in a buffer; note that TorchRL 0.14.1 mutates that
    buffer in place after using it, so its *gradient* silently uses β' while its loss value
    uses β; ours uses β for both).

    Args:
        behaviour_dist: the behaviour policy μ rebuilt from the stored distribution parameters
            (same kind and batch shape as ``dist``).
        beta: current penalty coefficient (≥ 0).
        dtarg, increment, decrement: target KL and multipliers (``increment ≥ 1``,
            ``decrement ≤ 1``); TorchRL defaults 0.01, 2, 0.5.
        samples_mc_kl: samples for the Monte-Carlo KL (when no closed form exists).
        Other arguments: see :func:`ppo_loss`.

    Returns:
        As :func:`ppo_loss` plus ``kl`` (``mean(KL)``; TorchRL returns the per-sample tensor) and
        ``beta`` (β', detached, to store for the next call) — all 0-d.
    """
    C.check_distribution(behaviour_dist)
    if isinstance(beta, Tensor):
        if beta.numel() != 1:
            raise ArgumentError("beta", f"expected a scalar, got shape {tuple(beta.shape)}")
        beta = float(beta)
    beta = C.check_nonneg("beta", beta)
    dtarg = C.check_nonneg("dtarg", dtarg)
    if isinstance(increment, bool) or not isinstance(increment, (int, float)) or increment < 1:
        raise ArgumentError("increment", f"expected a float >= 1, got {increment!r}")
    if isinstance(decrement, bool) or not isinstance(decrement, (int, float)) or decrement > 1:
        raise ArgumentError("decrement", f"expected a float <= 1, got {decrement!r}")
    C.check_nonneg("decrement", decrement)
    C.check_samples("samples_mc_kl", samples_mc_kl)
    clip_value = C.check_clip_value(clip_value)
    log_weight, advantage, kl_approx, has_critic = _prepare(
        dist, action, sample_log_prob, advantage, state_value, value_target, old_state_value,
        entropy_coeff=entropy_coeff, critic_coeff=critic_coeff, loss_critic_type=loss_critic_type,
        normalize_advantage=normalize_advantage, clip_value=clip_value,
        samples_mc_entropy=samples_mc_entropy,
    )  # fmt: skip
    if type(behaviour_dist) is not type(dist) or behaviour_dist.batch_shape != dist.batch_shape:
        raise ArgumentError(
            "behaviour_dist",
            f"expected a {type(dist).__name__} with batch shape "
            f"{tuple(dist.batch_shape)}, got {type(behaviour_dist).__name__} with "
            f"{tuple(behaviour_dist.batch_shape)}",
        )
    kl = kl_divergence(behaviour_dist, dist, samples_mc_kl=samples_mc_kl, generator=generator)
    kl = kl.unsqueeze(-1)
    neg_loss = log_weight.exp() * advantage - beta * kl
    kl_mean = kl.detach().mean()
    if kl_mean > dtarg * 1.5:
        new_beta = beta * increment
    elif kl_mean < dtarg / 1.5:
        new_beta = beta * decrement
    else:
        new_beta = beta
    out: dict[str, Tensor] = {
        "loss_objective": -neg_loss.mean(),
        "kl": kl_mean,
        "kl_approx": kl_approx,
    }
    _finish(
        out, dist, state_value, value_target, old_state_value, has_critic=has_critic,
        entropy_bonus=entropy_bonus, entropy_coeff=entropy_coeff, critic_coeff=critic_coeff,
        loss_critic_type=loss_critic_type, clip_value=clip_value,
        samples_mc_entropy=samples_mc_entropy, generator=generator,
    )  # fmt: skip
    loss = out.pop("loss")
    out["beta"] = torch.tensor(new_beta, dtype=log_weight.dtype, device=log_weight.device)
    out["loss"] = loss
    return out
