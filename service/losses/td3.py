"""TD3 on a replay sample (TorchRL's `TD3Loss`, TD(0) targets).

    ε = clamp(σ·N(0, 1), −c, c)  per action element (σ `policy_noise`, c `noise_clip`), drawn
        in the shape of the batch's actions from `generator` (TorchRL: `randn_like(action)`)
    a′ = clamp(μ̄(s′) + ε, low, high)              (μ instead of μ̄ unless `delay_actor`)
    G = r + γ·(1 − terminated)·min_e Q̄_e(s′, a′)
    loss_qvalue = mean_N Σ_e distance(Q_e(s, a), G);  td_error = max_e (Q_e(s, a) − G)²
    loss_actor  = −mean_N Q_0(s, μ(s))   (the first member, Q-parameters detached)

The delayed policy update is the learner's schedule, as in TorchRL's TD3 script: the server
steps the actor and moves the targets on every `policy_update_delay`-th applied update only.
"Addressing Function Approximation Error in Actor-Critic Methods", Fujimoto et al.
(https://arxiv.org/abs/1802.09477).
"""

from __future__ import annotations

import torch
from torch import Tensor

from service.errors import ArgumentError
from service.losses._offpolicy import Networks, Transitions, distance, value_target


def _critic(
    nets: Networks,
    batch: Transitions,
    gamma: float,
    loss_function: str,
    policy_noise: float,
    noise_clip: float,
    delay_actor: bool,
    delay_qvalue: bool,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """(loss_qvalue, td_error [N]) with target-policy smoothing (see the module docstring)."""
    action = batch.action
    noise = torch.empty_like(action).normal_(generator=generator)
    noise = (noise * policy_noise).clamp(-noise_clip, noise_clip)
    low, high = nets.action_bounds
    with torch.no_grad():
        next_policy = nets.target_policy if delay_actor else nets.policy
        next_action = (next_policy(batch.next_inputs) + noise).clamp(low, high)
        critic = nets.target_qvalue if delay_qvalue else nets.qvalue_frozen
        next_value = critic(batch.next_inputs, next_action)[..., 0].min(-1).values
        target = value_target(batch, next_value, gamma)
    predicted = nets.qvalue(batch.inputs, batch.action)[..., 0]  # [N, E]
    expanded = target.unsqueeze(-1).expand_as(predicted)
    loss_qvalue = distance(predicted, expanded, loss_function).sum(-1).mean()
    return loss_qvalue, (predicted.detach() - expanded).pow(2).max(-1).values


def td3_loss(
    nets: Networks,
    batch: Transitions,
    *,
    gamma: float = 0.99,
    loss_function: str = "smooth_l1",
    policy_noise: float = 0.2,
    noise_clip: float = 0.5,
    delay_actor: bool = True,
    delay_qvalue: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """loss_actor, loss_qvalue (+ td_error [N], loss)."""
    if nets.policy is None or nets.target_policy is None:
        raise ArgumentError("actor", "TD3 needs the model's actor")
    loss_actor = -nets.qvalue_frozen(batch.inputs, nets.policy(batch.inputs))[:, 0, 0].mean()
    loss_qvalue, td_error = _critic(
        nets, batch, gamma, loss_function, policy_noise, noise_clip, delay_actor, delay_qvalue,
        generator,
    )  # fmt: skip
    return {
        "loss": loss_actor + loss_qvalue,
        "loss_actor": loss_actor,
        "loss_qvalue": loss_qvalue,
        "td_error": td_error,
    }


def td3_bc_loss(
    nets: Networks,
    batch: Transitions,
    *,
    gamma: float = 0.99,
    loss_function: str = "smooth_l1",
    policy_noise: float = 0.2,
    noise_clip: float = 0.5,
    alpha: float = 2.5,
    delay_actor: bool = True,
    delay_qvalue: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """TD3+BC (TorchRL's `TD3BCLoss`, Fujimoto & Gu, https://arxiv.org/abs/2106.06860): TD3's
    critic, and the actor loss λ·(−mean_N Q_0(s, μ(s))) + mean ‖μ(s) − a‖², λ = α / mean|Q_0|
    (detached). Outputs loss_actor, loss_qvalue, bc_loss, lmbd (+ td_error [N], loss)."""
    if nets.policy is None or nets.target_policy is None:
        raise ArgumentError("actor", "TD3+BC needs the model's actor")
    policy_action = nets.policy(batch.inputs)
    q_actor = nets.qvalue_frozen(batch.inputs, policy_action)[:, 0, 0]
    bc_loss = torch.nn.functional.mse_loss(policy_action, batch.action)
    lmbd = alpha / q_actor.abs().mean().detach()
    loss_actor = (-lmbd * q_actor + bc_loss).mean()
    loss_qvalue, td_error = _critic(
        nets, batch, gamma, loss_function, policy_noise, noise_clip, delay_actor, delay_qvalue,
        generator,
    )  # fmt: skip
    return {
        "loss": loss_actor + loss_qvalue,
        "loss_actor": loss_actor,
        "loss_qvalue": loss_qvalue,
        "bc_loss": bc_loss.detach(),
        "lmbd": lmbd,
        "td_error": td_error,
    }
