"""Soft actor-critic for discrete actions (TorchRL's `DiscreteSACLoss`): exact expectations over
the actions instead of samples.

    p′ = π(·|s′), log p′ = log(p′ where p′ > 0 else 1e-8)
    V(s′) = Σ_a p′_a · [min_e Q̄_e(s′, a) − α·log p′_a]
    G = r + γ·(1 − terminated)·V(s′)
    loss_qvalue = mean_N Σ_e distance(Q_e(s, a_t), G);  td_error = max_e |Q_e(s, a_t) − G|
    loss_actor  = mean_N Σ_a π_a · [α·log π_a − min_e Q_e(s, a)]     (Q-parameters detached)
    loss_alpha  = mean_N [−log α · (Σ_a π_a log π_a + target_entropy)]
    entropy     = mean_N [−Σ_a π_a log π_a]

target_entropy "auto" = −log(1/num_actions) · target_entropy_weight (0.98).
"Soft Actor-Critic for Discrete Action Settings", Christodoulou (https://arxiv.org/abs/1910.07207).
"""

from __future__ import annotations

import torch
from torch import Tensor

from service.errors import ArgumentError
from service.losses._offpolicy import Networks, Transitions, alpha_of, distance, value_target


def discrete_sac_loss(
    nets: Networks,
    batch: Transitions,
    *,
    target_entropy: float,
    gamma: float = 0.99,
    loss_function: str = "smooth_l1",
    min_alpha: float | None = None,
    max_alpha: float | None = None,
    delay_qvalue: bool = True,
) -> dict[str, Tensor]:
    """TorchRL's DiscreteSACLoss outputs (see the module docstring) + td_error [N] and loss."""
    if nets.actor is None or nets.log_alpha is None:
        raise ArgumentError("actor", "discrete SAC needs the model's actor and its log_alpha")
    log_alpha = alpha_of(nets.log_alpha, min_alpha, max_alpha)
    alpha = log_alpha.detach().exp()
    with torch.no_grad():
        next_prob = nets.actor(batch.next_inputs).probs  # [N, A]
        next_log_prob = torch.log(torch.where(next_prob == 0, 1e-8, next_prob))
        target_net = nets.target_qvalue if delay_qvalue else nets.qvalue_frozen
        next_q = target_net(batch.next_inputs, None).min(1).values  # [N, A]
        next_value = (next_prob * (next_q - alpha * next_log_prob)).sum(-1)
        target = value_target(batch, next_value, gamma)
    values = nets.qvalue(batch.inputs, None)  # [N, E, A]
    index = batch.action.view(-1, 1, 1).expand(-1, values.shape[1], 1)
    chosen = values.gather(-1, index).squeeze(-1)  # [N, E]
    loss_qvalue = (
        distance(chosen, target.unsqueeze(-1).expand_as(chosen), loss_function).sum(-1).mean()
    )
    td_error = (chosen.detach() - target.unsqueeze(-1)).abs().max(-1).values

    dist = nets.actor(batch.inputs)
    prob, log_prob = dist.probs, dist.logits
    min_q = nets.qvalue_frozen(batch.inputs, None).min(1).values  # [N, A]
    loss_actor = (prob * (alpha * log_prob - min_q)).sum(-1).mean()
    expected_log_prob = (log_prob * prob).sum(-1).detach()
    loss_alpha = (-log_alpha * (expected_log_prob + target_entropy)).mean()
    return {
        "loss": loss_actor + loss_qvalue + loss_alpha,
        "loss_actor": loss_actor,
        "loss_qvalue": loss_qvalue,
        "loss_alpha": loss_alpha,
        "alpha": alpha,
        "entropy": -expected_log_prob.mean(),
        "td_error": td_error,
    }
