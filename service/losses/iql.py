"""Implicit Q-learning (TorchRL's `IQLLoss` and `DiscreteIQLLoss`, TD(0) targets).

    V(s) is fitted by expectile regression to the target ensemble's minimum at the data's action:
      u = min_e Q̄_e(s, a) − V(s),  loss_value = mean_N |τ − 1(u < 0)|·u²   (τ = `expectile`)
    G = r + γ·(1 − terminated)·V(s′)                   (V without gradient)
    loss_qvalue = mean_N Σ_e distance(Q_e(s, a), G);  td_error = max_e (Q_e(s, a) − G)²
    loss_actor  = −mean_N min(exp(β·(min_e Q̄_e(s, a) − V(s))), 100) · log π(a|s)
    entropy     = −mean_N log π(a|s)                    (β = `temperature`)

Only the data's actions are scored: nothing is sampled. Discrete actions (`discrete_iql_loss`)
read Q(s, a) from the action-value heads at the data's action index; the rest is the same.
"Offline Reinforcement Learning with Implicit Q-Learning", Kostrikov et al.
(https://arxiv.org/abs/2110.06169). The model needs its value network V besides the actor and
the Q ensemble.
"""

from __future__ import annotations

import torch
from torch import Tensor

from service import distributions
from service.errors import ArgumentError
from service.losses._offpolicy import Networks, Transitions, distance, value_target


def _chosen(nets: Networks, batch: Transitions, discrete: bool, target: bool) -> Tensor:
    """Q_e(s, a) at the data's actions, [N, E]: online or target ensemble."""
    network = nets.target_qvalue if target else nets.qvalue
    if not discrete:
        return network(batch.inputs, batch.action)[..., 0]
    values = network(batch.inputs, None)  # [N, E, A]
    index = batch.action.view(-1, 1, 1).expand(-1, values.shape[1], 1)
    return values.gather(-1, index).squeeze(-1)


def _iql(
    nets: Networks,
    batch: Transitions,
    discrete: bool,
    gamma: float,
    loss_function: str,
    temperature: float,
    expectile: float,
) -> dict[str, Tensor]:
    if nets.actor is None or nets.value is None:
        raise ArgumentError("actor", "IQL needs the model's actor and value network")
    with torch.no_grad():
        min_q = _chosen(nets, batch, discrete, target=True).min(-1).values
        value_now = nets.value(batch.inputs)
        next_value = nets.value(batch.next_inputs)
        target = value_target(batch, next_value, gamma)
    log_prob = distributions.log_prob(nets.actor(batch.inputs), batch.action)
    weight = torch.exp((min_q - value_now) * temperature).clamp_max(100)
    loss_actor = -(weight * log_prob).mean()

    predicted = _chosen(nets, batch, discrete, target=False)  # [N, E]
    expanded = target.unsqueeze(-1).expand_as(predicted)
    loss_qvalue = distance(predicted, expanded, loss_function).sum(-1).mean()

    difference = min_q - nets.value(batch.inputs)
    expectile_weight = torch.where(difference > 0, expectile, 1 - expectile)
    loss_value = (expectile_weight * difference.pow(2)).mean()
    return {
        "loss": loss_actor + loss_qvalue + loss_value,
        "loss_actor": loss_actor,
        "loss_qvalue": loss_qvalue,
        "loss_value": loss_value,
        "entropy": -log_prob.detach().mean(),
        "td_error": (predicted.detach() - expanded).pow(2).max(-1).values,
    }


def iql_loss(
    nets: Networks,
    batch: Transitions,
    *,
    gamma: float = 0.99,
    loss_function: str = "smooth_l1",
    temperature: float = 1.0,
    expectile: float = 0.5,
) -> dict[str, Tensor]:
    """IQLLoss: loss_actor, loss_qvalue, loss_value, entropy (+ td_error [N], loss)."""
    return _iql(nets, batch, False, gamma, loss_function, temperature, expectile)


def discrete_iql_loss(
    nets: Networks,
    batch: Transitions,
    *,
    gamma: float = 0.99,
    loss_function: str = "smooth_l1",
    temperature: float = 1.0,
    expectile: float = 0.5,
) -> dict[str, Tensor]:
    """DiscreteIQLLoss: as `iql_loss`, with a categorical actor and action-value heads."""
    if expectile >= 1.0:
        raise ArgumentError("expectile", f"expected a value < 1 (TorchRL's rule), got {expectile}")
    return _iql(nets, batch, True, gamma, loss_function, temperature, expectile)
