"""Conservative Q-learning for discrete actions (TorchRL's `DiscreteCQLLoss`, TD(0) targets).

    G = r + γ·(1 − terminated)·max_a′ Q̄(s′, a′)      (Q detached instead of Q̄ unless `delay_value`)
    loss_qvalue = mean_N ½·distance(Q(s, a), G)
    loss_cql    = mean_N [log Σ_a′ exp Q(s, a′) − Q(s, a)]     (pushes down unseen actions)
    td_error    = (Q(s, a) − G)²;  metrics pred_value = mean Q(s, ·), target_value = mean G,
                  td_error = mean td_error (TorchRL's metadata)

TorchRL 0.14.1's DiscreteCQLLoss hands its target parameters to the value estimator as `params=`,
which `TD0Estimator.value_estimate` ignores, so it bootstraps from the online network whatever
`delay_value` says; the service uses the target network as the option (and the paper) mean.
The two agree while the targets equal the online network, e.g. on a freshly loaded model.
"Conservative Q-Learning for Offline Reinforcement Learning", Kumar et al.
(https://arxiv.org/abs/2006.04779). The model is a DQN model: one action-value head.
"""

from __future__ import annotations

import torch
from torch import Tensor

from service.losses._offpolicy import Networks, Transitions, distance, value_target


def discrete_cql_loss(
    nets: Networks,
    batch: Transitions,
    *,
    gamma: float = 0.99,
    loss_function: str = "l2",
    delay_value: bool = True,
) -> dict[str, Tensor]:
    """loss_qvalue, loss_cql, pred_value, target_value, td_error (the mean) (+ per-sample
    td_error [N] and loss)."""
    values = nets.qvalue(batch.inputs, None)[:, 0]  # [N, A]
    chosen = values.gather(-1, batch.action.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():
        critic = nets.target_qvalue if delay_value else nets.qvalue_frozen
        bootstrap = critic(batch.next_inputs, None)[:, 0].max(-1).values
        target = value_target(batch, bootstrap, gamma)
    td_error = (chosen.detach() - target).pow(2)
    loss_qvalue = (0.5 * distance(chosen, target, loss_function)).mean()
    loss_cql = (torch.logsumexp(values, dim=-1) - chosen).mean()
    return {
        "loss": loss_qvalue + loss_cql,
        "loss_qvalue": loss_qvalue,
        "loss_cql": loss_cql,
        "pred_value": values.detach().mean(),
        "target_value": target.mean(),
        "td_error_mean": td_error.mean(),
        "td_error": td_error,
    }
