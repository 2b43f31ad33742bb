"""DDPG on a replay sample (TorchRL's `DDPGLoss`, TD(0) targets).

    μ(s): the deterministic policy; μ̄, Q̄ its and the critic's targets
    G = r + γ·(1 − terminated)·Q̄(s′, μ̄(s′))       (μ instead of μ̄ unless `delay_actor`,
                                                   Q detached instead of Q̄ unless `delay_value`)
    loss_value = mean_N distance(Q(s, a), G);  loss_actor = −mean_N Q(s, μ(s))  (Q detached)
    td_error = (Q(s, a) − G)²

TorchRL also returns pred_value/target_value per sample; the service reports their maxima
(pred_value_max, target_value_max) as metrics and the per-sample error as td_error.
"Continuous control with deep reinforcement learning", Lillicrap et al.
(https://arxiv.org/abs/1509.02971). The Q-network is an ensemble of one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from service.errors import ArgumentError
from service.losses._offpolicy import Networks, Transitions, distance, value_target


def ddpg_loss(
    nets: Networks,
    batch: Transitions,
    *,
    gamma: float = 0.99,
    loss_function: str = "l2",
    delay_actor: bool = False,
    delay_value: bool = True,
) -> dict[str, Tensor]:
    """loss_actor, loss_value, pred_value_max, target_value_max (+ td_error [N], loss)."""
    if nets.policy is None or nets.target_policy is None:
        raise ArgumentError("actor", "DDPG needs the model's actor")
    predicted = nets.qvalue(batch.inputs, batch.action)[:, 0, 0]  # [N]
    with torch.no_grad():
        next_policy = nets.target_policy if delay_actor else nets.policy
        next_action = next_policy(batch.next_inputs)
        critic = nets.target_qvalue if delay_value else nets.qvalue_frozen
        next_value = critic(batch.next_inputs, next_action)[:, 0, 0]
        target = value_target(batch, next_value, gamma)
    loss_value = distance(predicted, target, loss_function).mean()
    loss_actor = -nets.qvalue_frozen(batch.inputs, nets.policy(batch.inputs))[:, 0, 0].mean()
    return {
        "loss": loss_actor + loss_value,
        "loss_actor": loss_actor,
        "loss_value": loss_value,
        "pred_value_max": predicted.detach().max(),
        "target_value_max": target.max(),
        "td_error": (predicted.detach() - target).pow(2),
    }
