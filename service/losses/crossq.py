"""CrossQ (TorchRL's `CrossQLoss`): SAC without target networks, the current and next
state-action pairs evaluated in one joint pass of the online Q ensemble.

    a′ ~ π(·|s′) (no gradient), then â ~ π(·|s) (reparameterised), TorchRL's order
    [Q_e(s, a); Q_e(s′, a′)] = Q_e([s; s′], [a; a′])       one pass over 2N rows
    G = r + γ(1 − terminated)·(min_e Q_e(s′, a′) − α·log π(a′|s′))     (detached)
    loss_qvalue = mean_N Σ_e distance(Q_e(s, a), G);  td_error = max_e |Q_e(s, a) − G|
    loss_actor  = mean_N [α·log π(â|s) − min_e Q_e(s, â)]      (Q-parameters detached)
    loss_alpha  = mean_N [−log α·(log π(â|s) + target_entropy)]

The joint pass is what lets batch-normalised critics see both distributions at once (Bhatt et
al., "CrossQ: Batch Normalization in Deep Reinforcement Learning for Greater Sample Efficiency
and Simplicity", https://arxiv.org/abs/1902.05605). The server runs the Q-network in the mode it
was loaded in (exported networks: eval), so batch-norm statistics are not updated by the service.
"""

from __future__ import annotations

import torch
from torch import Tensor

from service import distributions
from service.errors import ArgumentError
from service.losses._offpolicy import Networks, Transitions, alpha_of, distance, value_target


def crossq_loss(
    nets: Networks,
    batch: Transitions,
    *,
    target_entropy: float,
    gamma: float = 0.99,
    loss_function: str = "smooth_l1",
    min_alpha: float | None = None,
    max_alpha: float | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """TorchRL's CrossQLoss scalars: loss_actor, loss_qvalue, loss_alpha, alpha, entropy (+
    td_error [N], loss)."""
    if nets.actor is None or nets.log_alpha is None:
        raise ArgumentError("actor", "CrossQ needs the model's actor and its log_alpha")
    log_alpha = alpha_of(nets.log_alpha, min_alpha, max_alpha)
    alpha = log_alpha.detach().exp()
    with torch.no_grad():
        next_action, next_log_prob = distributions.rsample_and_log_prob(
            nets.actor(batch.next_inputs), generator=generator
        )
    joint_inputs = [torch.cat([now, following]) for now, following in zip(
        batch.inputs, batch.next_inputs, strict=True
    )]  # fmt: skip
    joint = nets.qvalue(joint_inputs, torch.cat([batch.action, next_action]))[..., 0]
    predicted, following_q = joint[: batch.rows], joint[batch.rows :]  # [N, E] each
    next_value = (following_q.min(-1).values - alpha * next_log_prob).detach()
    target = value_target(batch, next_value, gamma)
    expanded = target.unsqueeze(-1).expand_as(predicted)
    loss_qvalue = distance(predicted, expanded, loss_function).sum(-1).mean()

    action, log_prob = distributions.rsample_and_log_prob(
        nets.actor(batch.inputs), generator=generator
    )
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
        "td_error": (predicted.detach() - expanded).abs().max(-1).values,
    }
