"""Shared contracts and building blocks of the loss catalogue (private).

Layout (TorchRL's): a distribution with batch shape ``[*B]``; per-sample log-probabilities
``[*B]``; value-like tensors (advantage, state values, targets, rewards, flags) ``[*B, 1]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torch import distributions as D

from service.composite import CompositeDistribution, entropy_metric_name
from service.distributions import entropy as _entropy
from service.distributions import head_entropies as _head_entropies
from service.distributions import log_prob as _log_prob
from service.errors import ArgumentError

LOSS_CRITIC_TYPES = ("l1", "l2", "smooth_l1")


def shape_str(shape: torch.Size | tuple[int, ...]) -> str:
    return str(tuple(shape))


def check_distribution(dist: object) -> D.Distribution:
    if not isinstance(dist, D.Distribution):
        raise ArgumentError("dist", f"expected a torch Distribution, got {type(dist).__name__}")
    return dist


def check_tensor(
    name: str,
    value: object,
    shape: torch.Size | tuple[int, ...],
    dtype: torch.dtype | None = None,
    *,
    kind: str = "float",
) -> Tensor:
    """Raise ``ValueError`` unless ``value`` is a tensor of exactly ``shape`` (and ``dtype``)."""
    if not isinstance(value, Tensor):
        raise ArgumentError(name, f"expected a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise ArgumentError(
            name,
            f"expected shape {shape_str(shape)}, got {shape_str(value.shape)} "
            "(no broadcasting: value-like inputs are [*B, 1], log-probs [*B])",
        )
    if kind == "float" and not value.dtype.is_floating_point:
        raise ArgumentError(name, f"expected a floating-point dtype, got {value.dtype}")
    if kind == "bool" and value.dtype != torch.bool:
        raise ArgumentError(name, f"expected dtype torch.bool, got {value.dtype}")
    if dtype is not None and kind == "float" and value.dtype != dtype:
        raise ArgumentError(name, f"expected dtype {dtype}, got {value.dtype}")
    return value


def check_no_grad(name: str, value: Tensor) -> None:
    if value.requires_grad:
        raise ArgumentError(name, "expected a tensor that does not require grad (detach it)")


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ArgumentError(name, f"expected one of {list(choices)}, got {value!r}")


def check_nonneg(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentError(name, f"expected a float, got {value!r}")
    if not value >= 0:
        raise ArgumentError(name, f"expected >= 0, got {value!r}")
    return float(value)


def check_samples(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArgumentError(name, f"expected an int >= 1, got {value!r}")
    return value


def current_log_prob(
    dist: D.Distribution, action: Tensor | Mapping[str, Tensor], dtype: torch.dtype
) -> Tensor:
    """``log π(a)`` ``[*B]``; checks that the distribution computes in the data's dtype.

    A composite policy's action is a mapping head → action; its log-probability is the sum of
    the heads' (TorchRL's summed log-weight in both log-prob modes)."""
    if isinstance(action, Mapping) and isinstance(dist, CompositeDistribution):
        for name, head in action.items():
            if not isinstance(head, Tensor):
                raise ArgumentError(
                    f"action[{name!r}]", f"expected a torch.Tensor, got {type(head).__name__}"
                )
            check_no_grad(f"action[{name!r}]", head)
    elif not isinstance(action, Tensor):
        raise ArgumentError("action", f"expected a torch.Tensor, got {type(action).__name__}")
    else:
        check_no_grad("action", action)
    lp = _log_prob(dist, action)
    if lp.dtype != dtype:
        raise ArgumentError(
            "dist", f"expected parameters of dtype {dtype} (as advantage), got {lp.dtype}"
        )
    return lp


def standardize(advantage: Tensor) -> Tensor:
    """TorchRL's ``normalize_advantage``: ``(A − mean) / max(std, 1e-6)``, unbiased std.

    Applied over every element (TorchRL's ``normalize_advantage_exclude_dims=()``) and only
    when there is more than one element; the floor is float32's resolution for every dtype.
    """
    if advantage.numel() <= 1:
        return advantage
    eps = torch.finfo(torch.float).resolution
    return (advantage - advantage.mean()) / advantage.std().clamp_min(eps)


def entropy_per_sample(
    dist: D.Distribution, samples_mc_entropy: int, generator: torch.Generator | None
) -> Tensor:
    """Entropy ``[*B, 1]`` (see :func:`service.distributions.entropy`)."""
    return _entropy(dist, samples_mc_entropy=samples_mc_entropy, generator=generator).unsqueeze(-1)


def entropy_terms(
    dist: D.Distribution, samples_mc_entropy: int, generator: torch.Generator | None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Entropy ``[*B, 1]`` and, for a composite policy in non-aggregate mode, each head's
    ``[*B, 1]`` under its metric name (TorchRL's ``composite_entropy``; the total is their sum,
    so Monte-Carlo heads draw once)."""
    if not isinstance(dist, CompositeDistribution):
        return entropy_per_sample(dist, samples_mc_entropy, generator), {}
    heads = _head_entropies(dist, samples_mc_entropy=samples_mc_entropy, generator=generator)
    total: Tensor | None = None
    for part in heads.values():
        total = part if total is None else total + part
    assert total is not None
    if dist.aggregate:
        return total.unsqueeze(-1), {}
    named = {entropy_metric_name(name): part.unsqueeze(-1) for name, part in heads.items()}
    return total.unsqueeze(-1), named


def distance(target: Tensor, value: Tensor, loss_critic_type: str) -> Tensor:
    """Elementwise ``l1`` ``|v − t|``, ``l2`` ``(v − t)²`` (no ½) or Huber(δ=1) ``smooth_l1``."""
    if loss_critic_type == "l2":
        return F.mse_loss(target, value, reduction="none")
    if loss_critic_type == "l1":
        return F.l1_loss(target, value, reduction="none")
    return F.smooth_l1_loss(target, value, reduction="none")


def critic_terms(
    state_value: Tensor,
    value_target: Tensor,
    loss_critic_type: str,
    clip_value: float | None,
    old_state_value: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """Elementwise critic loss ``[*B, 1]`` and the value-clip fraction (TorchRL's semantics).

    With ``clip_value`` = c: ``V_clip = V_old + clamp(V − V_old, −c, c)`` and the loss is
    ``max(d(V_target, V), d(V_target, V_clip))``.
    """
    loss = distance(value_target, state_value, loss_critic_type)
    if not clip_value:
        return loss, None
    assert old_state_value is not None
    pre = state_value - old_state_value
    clipped = pre.clamp(-clip_value, clip_value)
    with torch.no_grad():
        fraction = (pre != clipped).to(state_value.dtype).mean()
    loss_clipped = distance(value_target, old_state_value + clipped, loss_critic_type)
    return torch.maximum(loss, loss_clipped), fraction


def explained_variance(value_target: Tensor, state_value: Tensor) -> Tensor:
    """``1 − Var(V_target − V) / (Var(V_target) + eps)`` pooled over every element.

    TorchRL takes the variances over dim 0 only (a per-time-step vector for ``[B, T, 1]``
    data); ours pools all elements into one scalar, identical for a flat ``[N, 1]`` batch.
    """
    with torch.no_grad():
        tgt = value_target.detach().reshape(-1)
        pred = state_value.detach().reshape(-1)
        eps = torch.finfo(tgt.dtype).eps
        resid = torch.var(tgt - pred, correction=0)
        total = torch.var(tgt, correction=0)
        return 1.0 - resid / (total + eps)


def check_critic_inputs(
    state_value: Tensor | None,
    value_target: Tensor | None,
    old_state_value: Tensor | None,
    clip_value: float | None,
    value_shape: torch.Size,
    dtype: torch.dtype,
) -> None:
    if state_value is None:
        raise ArgumentError("state_value", "required for the critic term (got None)")
    check_tensor("state_value", state_value, value_shape, dtype)
    if value_target is None:
        raise ArgumentError("value_target", "required with state_value (got None)")
    check_tensor("value_target", value_target, value_shape, dtype)
    if clip_value:
        if old_state_value is None:
            raise ArgumentError("old_state_value", "required when clip_value is set (got None)")
        check_tensor("old_state_value", old_state_value, value_shape, dtype)


def check_clip_value(value: object) -> float | None:
    """``None``/``0`` → off; a float ≥ 0 (bool refused, as in TorchRL's base losses)."""
    if value is None:
        return None
    if isinstance(value, Tensor) and value.numel() == 1:
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ArgumentError("clip_value", f"expected None or a float >= 0, got {value!r}")
    return float(value) or None


def total(out: dict[str, Tensor]) -> Tensor:
    """The quantity to backward: the sum of every ``loss_*`` entry."""
    terms = [v for k, v in out.items() if k.startswith("loss_")]
    result = terms[0]
    for term in terms[1:]:
        result = result + term
    return result
