"""DreamerV3's critic loss on imagined states, with the slow-critic regulariser.

Hafner et al. 2023 (arXiv 2301.04104), eq. 10, with TorchRL 0.14.1's `DreamerV3ValueLoss`.
Over the imagined states s_0 … s_{H−1} ([*B, H]) with λ-returns R_t (targets, no gradient)
and weights w_t:

  "symlog_mse":  ℓ_t = (symlog(v(s_t)) − symlog(R_t))²
  "two_hot":     ℓ_t = −Σ_j twohot(R_t)_j log softmax(logits(s_t))_j     (255 bins)

The slow critic v̄ (an EMA of the critic's parameters, kept by the caller) adds
ρ · ℓ(v(s_t), v̄(s_t)) with v̄ decoded to a scalar, and

    L = mean_t(w_t · (ℓ_t + ρ ℓ^slow_t)),     value_slow_loss = mean_t(w_t · ℓ^slow_t)
"""

from __future__ import annotations

import torch

from service.errors import ArgumentError
from service.losses.dreamer.symlog import symlog
from service.losses.dreamer.two_hot import two_hot_cross_entropy

VALUE_LOSSES = ("symlog_mse", "two_hot")


def _step_loss(
    prediction: torch.Tensor, target: torch.Tensor, value_loss: str, bins: torch.Tensor | None
) -> torch.Tensor:
    if value_loss == "two_hot":
        assert bins is not None
        return two_hot_cross_entropy(prediction, target, bins)
    return (symlog(prediction) - symlog(target)).pow(2)


def dreamer_value_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    value_loss: str = "symlog_mse",
    bins: torch.Tensor | None = None,
    slow_target: torch.Tensor | None = None,
    slow_critic_regularization: float = 0.0,
) -> dict[str, torch.Tensor]:
    """{"loss_value", "value_slow_loss"} (scalars; the second detached).

    `prediction`: the critic's values [*B, H] ("symlog_mse") or logits [*B, H, K] ("two_hot");
    `target`, `weight`, `slow_target` (the slow critic's decoded values): [*B, H]."""
    if value_loss not in VALUE_LOSSES:
        raise ArgumentError("value_loss", f"expected one of {VALUE_LOSSES}, got {value_loss!r}")
    target = target.detach()
    loss = _step_loss(prediction, target, value_loss, bins)
    if slow_critic_regularization and slow_target is not None:
        slow = _step_loss(prediction, slow_target.detach(), value_loss, bins)
        loss = loss + slow_critic_regularization * slow
    else:
        slow = torch.zeros_like(loss)
    return {
        "loss_value": (weight * loss).mean(),
        "value_slow_loss": (weight * slow).mean().detach(),
    }
