"""REDQ: randomized ensembled double Q-learning (TorchRL's `REDQLoss`, SAC-style actor).

    K = `sub_sample_len` of the E target Q-networks, drawn per call (`randperm(E)[:K]`, sorted);
    one reparameterised draw for s and s′ together: â ~ π(·|s), a′ ~ π(·|s′) (TorchRL's order)
    α = exp(clamp(log α, log min_alpha, log max_alpha))     (defaults 0.1 and 10)
    G = r + γ(1 − terminated)·min_{k ∈ K} [Q̄_k(s′, a′) − α·log π(a′|s′)]
    loss_qvalue = mean_{e,N} distance(Q_e(s, a), G);  td_error = max_e (Q_e(s, a) − G)²
    loss_actor  = mean_{e,N} [α·log π(â|s) − Q_e(s, â)]     (every member, Q detached)
    loss_alpha  = mean over both draws of −α_grad·(log π + target_entropy)
                  (α_grad: exp(log α) with the clamp's value and log α's gradient)
    entropy     = −mean over both draws of log π

"Randomized Ensembled Double Q-Learning: Learning Fast Without a Model", Chen et al.
(https://arxiv.org/abs/2101.05982). Every draw (the subset, then the actions) comes from
`generator` when given.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from service import distributions
from service.errors import ArgumentError
from service.losses._offpolicy import Networks, Transitions, distance, value_target


def redq_loss(
    nets: Networks,
    batch: Transitions,
    *,
    target_entropy: float,
    gamma: float = 0.99,
    loss_function: str = "smooth_l1",
    sub_sample_len: int = 2,
    min_alpha: float | None = 0.1,
    max_alpha: float | None = 10.0,
    delay_qvalue: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """TorchRL's REDQLoss scalars: loss_actor, loss_qvalue, loss_alpha, alpha, entropy (+
    td_error [N], loss)."""
    if nets.actor is None or nets.log_alpha is None:
        raise ArgumentError("actor", "REDQ needs the model's actor and its log_alpha")
    predicted = nets.qvalue(batch.inputs, batch.action)[..., 0]  # [N, E]
    members = predicted.shape[-1]
    subset = max(1, min(int(sub_sample_len), members - 1))
    chosen = torch.randperm(members, generator=generator)[:subset].sort().values
    log_alpha = nets.log_alpha
    low = -math.inf if min_alpha is None else math.log(min_alpha)
    high = math.inf if max_alpha is None else math.log(max_alpha)
    clamped = log_alpha.detach().clamp(low, high)
    alpha = clamped.exp()
    pairs = zip(batch.inputs, batch.next_inputs, strict=True)
    both = [torch.cat([now, following]) for now, following in pairs]
    action, log_prob = distributions.rsample_and_log_prob(nets.actor(both), generator=generator)
    rows = batch.rows
    action_now, log_prob_now = action[:rows], log_prob[:rows]
    with torch.no_grad():
        critic = nets.target_qvalue if delay_qvalue else nets.qvalue_frozen
        next_q = critic(batch.next_inputs, action[rows:].detach())[..., 0][
            :, chosen.to(action.device)
        ]
        next_value = (next_q - alpha * log_prob[rows:].detach().unsqueeze(-1)).min(-1).values
        target = value_target(batch, next_value, gamma)
    expanded = target.unsqueeze(-1).expand_as(predicted)
    loss_qvalue = distance(predicted, expanded, loss_function).mean()
    q_actor = nets.qvalue_frozen(batch.inputs, action_now)[..., 0]  # [N, E]
    loss_actor = (alpha * log_prob_now.unsqueeze(-1) - q_actor).mean()
    alpha_grad = (log_alpha - log_alpha.detach() + clamped).exp()
    loss_alpha = (-alpha_grad * (log_prob.detach() + target_entropy)).mean()
    return {
        "loss": loss_actor + loss_qvalue + loss_alpha,
        "loss_actor": loss_actor,
        "loss_qvalue": loss_qvalue,
        "loss_alpha": loss_alpha,
        "alpha": alpha,
        "entropy": -log_prob.detach().mean(),
        "td_error": (predicted.detach() - expanded).pow(2).max(-1).values,
    }
