"""DQN and double DQN on a replay sample (TorchRL's `DQNLoss`, TD(0) targets).

    Q(s, a) from the online action-value head; the bootstrap V(s′) is
      DQN:        max_a′ Q̄(s′, a′)                      (Q̄ the target network, `delay_value`)
      double DQN: Q̄(s′, argmax_a′ Q(s′, a′))             (online network chooses, target scores)
    G = r + γ·(1 − terminated)·V(s′);  loss = mean_N distance(Q(s, a), G)
    td_error = (Q(s, a) − G)²  (TorchRL's priority for a prioritized replay buffer)

"Human-level control through deep reinforcement learning", Mnih et al. (2015);
"Deep Reinforcement Learning with Double Q-learning", van Hasselt et al.
(https://arxiv.org/abs/1509.06461). Without `delay_value` the online network's detached values
serve as the target (TorchRL's `create_target_params=False`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from service.errors import ArgumentError
from service.losses._offpolicy import Networks, Transitions, distance, value_target


def dqn_loss(
    nets: Networks,
    batch: Transitions,
    *,
    gamma: float = 0.99,
    loss_function: str = "l2",
    delay_value: bool = True,
    double_dqn: bool = False,
) -> dict[str, Tensor]:
    """TorchRL's DQNLoss outputs: ``loss`` (and the per-sample ``td_error`` [N])."""
    if double_dqn and not delay_value:
        raise ArgumentError("double_dqn", "double_dqn=True requires delay_value=True")
    values = nets.qvalue(batch.inputs, None)  # [N, 1, A]
    values = values[:, 0]
    chosen = values.gather(-1, batch.action.unsqueeze(-1)).squeeze(-1)  # [N]
    with torch.no_grad():
        target_net = nets.target_qvalue if delay_value else nets.qvalue_frozen
        next_values = target_net(batch.next_inputs, None)[:, 0]  # [N, A]
        if double_dqn:
            greedy = nets.qvalue_frozen(batch.next_inputs, None)[:, 0].argmax(-1, keepdim=True)
            bootstrap = next_values.gather(-1, greedy).squeeze(-1)
        else:
            bootstrap = next_values.max(-1).values
        target = value_target(batch, bootstrap, gamma)
    loss = distance(chosen, target, loss_function).mean()
    return {"loss": loss, "td_error": (chosen.detach() - target).pow(2)}
