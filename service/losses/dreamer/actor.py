"""DreamerV3's actor loss on an imagined rollout.

Hafner et al. 2023 (arXiv 2301.04104), eq. 11, with TorchRL 0.14.1's `DreamerV3ActorLoss`
reductions. Over the imagined states s_0 … s_{H−1} ([*B, H]), with λ-returns R_t
(`lambda_return`), loss weights w_t (`imagination_weights`, or 1 without `discount_loss`),
the return scale S (`return_norm`) and entropy bonus η:

  reparameterised (dynamics backprop; continuous actors; `use_reinforce=False`):
      L = −mean_t(w_t · R_t / S) − η · mean_t(w_t · H[π(·|s_t)])
  REINFORCE (discrete actors; `use_reinforce=True`):
      L = −mean_t(w_t · log π(a_t|sg(s_t)) · sg(R_t − v(s_t)) / S) − η · mean_t(w_t · H[π(·|s_t)])

The means run over every batch element and step. In the reparameterised form the gradient
reaches the actor through the sampled actions, the world model's transitions and the critic
inside R_t; the caller decides which parameters that gradient may change.
"""

from __future__ import annotations

import torch


def dreamer_actor_loss(
    lambda_target: torch.Tensor,
    weight: torch.Tensor,
    scale: torch.Tensor,
    *,
    log_prob: torch.Tensor | None = None,
    baseline: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    use_reinforce: bool = False,
    entropy_bonus: float = 3e-4,
) -> dict[str, torch.Tensor]:
    """{"loss_actor", "actor_entropy"} (scalars; the entropy is the weighted mean, detached).

    `lambda_target`, `weight`, `log_prob`, `baseline`, `entropy`: [*B, H]; `scale`: a scalar.
    REINFORCE needs `log_prob` and `baseline`; η > 0 needs `entropy`."""
    if use_reinforce:
        assert log_prob is not None and baseline is not None
        advantage = (lambda_target - baseline).detach() / scale
        loss = -(weight * log_prob * advantage).mean()
    else:
        loss = -(weight * lambda_target / scale).mean()
    if entropy_bonus > 0:
        assert entropy is not None
        mean_entropy = (weight * entropy).mean()
        loss = loss - entropy_bonus * mean_entropy
    else:
        mean_entropy = loss.new_zeros(())
    return {"loss_actor": loss, "actor_entropy": mean_entropy.detach()}
