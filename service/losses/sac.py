"""Soft actor-critic with a tanh-normal actor (TorchRL's `SACLoss`, version 2: no V-network).

    a′ ~ π(·|s′), â ~ π(·|s)        (reparameterised; the sampler is injectable: `generator`)
    V(s′) = min_e [Q̄_e(s′, a′) − α·log π(a′|s′)]
    G = r + γ·(1 − terminated)·V(s′)
    loss_qvalue = mean_N Σ_e distance(Q_e(s, a), G)
    loss_actor  = mean_N [α·log π(â|s) − min_e Q_e(s, â)]      (Q-parameters detached)
    loss_alpha  = mean_N [−log α · (log π(â|s) + target_entropy)]
    td_error    = max_e |Q_e(s, a) − G|

α = exp(log α) (clamped to [min_alpha, max_alpha] when given), detached in the actor and target
terms. target_entropy "auto" = −prod(action shape). The draws happen in TorchRL's order: the
next-state actions first, then the current ones; each from `generator` when one is given (a
seeded one reproduces TorchRL after `torch.manual_seed` with the same seed, on the CPU).

"Soft Actor-Critic Algorithms and Applications", Haarnoja et al.
(https://arxiv.org/abs/1812.05905).
"""

from __future__ import annotations

import torch
from torch import Tensor

from service import distributions
from service.errors import ArgumentError
from service.losses._offpolicy import Networks, Transitions, alpha_of, distance, value_target


def sac_loss(
    nets: Networks,
    batch: Transitions,
    *,
    target_entropy: float,
    gamma: float = 0.99,
    loss_function: str = "smooth_l1",
    min_alpha: float | None = None,
    max_alpha: float | None = None,
    delay_qvalue: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """TorchRL's SACLoss outputs: loss_actor, loss_qvalue, loss_alpha, alpha, entropy (+ the
    per-sample td_error [N] and ``loss``, their sum)."""
    if nets.actor is None or nets.log_alpha is None:
        raise ArgumentError("actor", "SAC needs the model's actor and its log_alpha")
    log_alpha = alpha_of(nets.log_alpha, min_alpha, max_alpha)
    alpha = log_alpha.detach().exp()
    with torch.no_grad():
        next_dist = nets.actor(batch.next_inputs)
        next_action, next_log_prob = distributions.rsample_and_log_prob(
            next_dist, generator=generator
        )
        target_net = nets.target_qvalue if delay_qvalue else nets.qvalue_frozen
        next_q = target_net(batch.next_inputs, next_action)[..., 0]  # [N, E]
        next_value = (next_q - alpha * next_log_prob.unsqueeze(-1)).min(-1).values
        target = value_target(batch, next_value, gamma)
    predicted = nets.qvalue(batch.inputs, batch.action)[..., 0]  # [N, E]
    loss_qvalue = (
        distance(predicted, target.unsqueeze(-1).expand_as(predicted), loss_function).sum(-1).mean()
    )
    td_error = (predicted.detach() - target.unsqueeze(-1)).abs().max(-1).values

    dist = nets.actor(batch.inputs)
    action, log_prob = distributions.rsample_and_log_prob(dist, generator=generator)
    q_actor = nets.qvalue_frozen(batch.inputs, action)[..., 0].min(-1).values
    loss_actor = (alpha * log_prob - q_actor).mean()
    loss_alpha = (-log_alpha * (log_prob.detach() + target_entropy)).mean()
    return {
        "loss": loss_actor + loss_qvalue + loss_alpha,
        "loss_actor": loss_actor,
        "loss_qvalue": loss_qvalue,
        "loss_alpha": loss_alpha,
        "alpha": alpha,
        "entropy": -log_prob.detach().mean(),
        "td_error": td_error,
    }
