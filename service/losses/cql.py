"""Conservative Q-learning, continuous actions (TorchRL's `CQLLoss`, SAC-style actor).

Draws, in TorchRL's order, from `generator` when one is given: a′ ~ π(·|s′) [N]; R uniform
random actions per sample in [−1, 1]; R actions ~ π(·|s) and R ~ π(·|s′) per sample; the
behaviour-cloning draw â_bc ~ π(·|s); the actor's draw â ~ π(·|s) (R = `num_random`).

    G = r + γ(1 − terminated)·min_e Q̄_e(s′, a′)       (− α·log π(a′|s′) unless
                                                        `deterministic_backup`)
    loss_qvalue = mean_N Σ_e distance(Q_e(s, a), G);  td_error = max_e (Q_e(s, a) − G)²
    for each of the two members e and each of the N·R proposals j:
      c_ej = T·logsumexp([Q_e(s, u_j) − log 0.5^A, Q_e(s, a′_j) − log π(a′_j|s′),
                          Q_e(s, a_j) − log π(a_j|s)] / T)·w
    loss_cql = Σ_e [mean_j c_ej − w·mean_N Q_e(s, a)]   (T `temperature`, w `min_q_weight`)
    loss_actor    = mean_N [α·log π(â|s) − min_e Q_e(s, â)]     (Q-parameters detached)
    loss_actor_bc = mean_N [α·log π(â_bc|s) − log π(a|s)]        (reported, not in `loss`)
    loss_alpha    = mean_N [−log α·(log π(â|s) + target_entropy)]

As in TorchRL 0.14.1, the logsumexp of each proposal j runs over its three kinds (the proposals
keep their flat [N·R] layout), and the ensemble has exactly two members. `loss` is
loss_qvalue + loss_cql + loss_actor + loss_alpha, TorchRL's CQL recipe after its
behaviour-cloning warm-up. "Conservative Q-Learning for Offline Reinforcement Learning",
Kumar et al. (https://arxiv.org/abs/2006.04779).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from service import distributions
from service.errors import ArgumentError
from service.losses._offpolicy import Networks, Transitions, alpha_of, distance, value_target


def _repeat(inputs: list[Tensor], times: int) -> list[Tensor]:
    return [x.repeat_interleave(times, dim=0) for x in inputs]


def cql_loss(
    nets: Networks,
    batch: Transitions,
    *,
    target_entropy: float,
    gamma: float = 0.99,
    loss_function: str = "smooth_l1",
    min_alpha: float | None = None,
    max_alpha: float | None = None,
    delay_qvalue: bool = True,
    temperature: float = 1.0,
    min_q_weight: float = 1.0,
    deterministic_backup: bool = True,
    num_random: int = 10,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """TorchRL's CQLLoss outputs (see the module docstring) + td_error [N] and loss."""
    if nets.actor is None or nets.log_alpha is None:
        raise ArgumentError("actor", "CQL needs the model's actor and its log_alpha")
    repeats = int(num_random)
    log_alpha = alpha_of(nets.log_alpha, min_alpha, max_alpha)
    alpha = log_alpha.detach().exp()
    with torch.no_grad():
        next_action, next_log_prob = distributions.rsample_and_log_prob(
            nets.actor(batch.next_inputs), generator=generator
        )
        critic = nets.target_qvalue if delay_qvalue else nets.qvalue_frozen
        next_value = critic(batch.next_inputs, next_action)[..., 0].min(-1).values
        if not deterministic_backup:
            next_value = next_value - alpha * next_log_prob
        target = value_target(batch, next_value, gamma)
    predicted = nets.qvalue(batch.inputs, batch.action)[..., 0]  # [N, 2]
    expanded = target.unsqueeze(-1).expand_as(predicted)
    loss_qvalue = distance(predicted, expanded, loss_function).sum(-1).mean()

    action_size = batch.action.shape[-1]
    random_actions = torch.empty(
        (batch.rows * repeats, action_size), dtype=predicted.dtype, device=predicted.device
    ).uniform_(-1, 1, generator=generator)
    inputs_r, next_inputs_r = _repeat(batch.inputs, repeats), _repeat(batch.next_inputs, repeats)
    with torch.no_grad():
        current, current_log_prob = distributions.rsample_and_log_prob(
            nets.actor(inputs_r), generator=generator
        )
        following, following_log_prob = distributions.rsample_and_log_prob(
            nets.actor(next_inputs_r), generator=generator
        )
    q_random = nets.qvalue(inputs_r, random_actions)[..., 0]  # [N·R, 2]
    q_current = nets.qvalue(inputs_r, current)[..., 0]
    q_following = nets.qvalue(next_inputs_r, following)[..., 0]
    random_density = math.log(0.5**action_size)
    proposals = torch.stack(
        [
            q_random - random_density,
            q_following - following_log_prob.unsqueeze(-1),
            q_current - current_log_prob.unsqueeze(-1),
        ],
        dim=-1,
    )  # [N·R, 2, 3]
    conservative = torch.logsumexp(proposals / temperature, dim=-1) * min_q_weight * temperature
    loss_cql = (conservative.mean(0) - min_q_weight * predicted.mean(0)).sum()

    dist = nets.actor(batch.inputs)
    _, bc_log_prob_sample = distributions.rsample_and_log_prob(dist, generator=generator)
    bc_log_prob = distributions.log_prob(dist, batch.action)
    loss_actor_bc = (alpha * bc_log_prob_sample - bc_log_prob).mean()
    action, log_prob = distributions.rsample_and_log_prob(dist, generator=generator)
    q_actor = nets.qvalue_frozen(batch.inputs, action)[..., 0].min(-1).values
    loss_actor = (alpha * log_prob - q_actor).mean()
    loss_alpha = (-log_alpha * (log_prob.detach() + target_entropy)).mean()
    return {
        "loss": loss_qvalue + loss_cql + loss_actor + loss_alpha,
        "loss_actor": loss_actor,
        "loss_actor_bc": loss_actor_bc,
        "loss_qvalue": loss_qvalue,
        "loss_cql": loss_cql,
        "loss_alpha": loss_alpha,
        "alpha": alpha,
        "entropy": -log_prob.detach().mean(),
        "td_error": (predicted.detach() - expanded).pow(2).max(-1).values,
    }
