"""Imagination: roll the actor and the world model's prior forward from starting latents.

Hafner et al. 2023 (arXiv 2301.04104), §"Critic learning" / "Actor learning": from each
starting latent s_0 = (z_0, h_0), for t = 0 … H−1,

    a_t ~ π(·|s_t)      (reparameterised for continuous actors; one-hot for categorical ones)
    s_{t+1} = prior(s_t, a_t)      (the prior samples z_{t+1}; straight-through gradients)

then, in one batched pass each over all imagined latents, the reward r_t = r̂(s_{t+1}),
the continue probability c(s_t) = σ(continue logit) for t = 0 … H (1 without a continue head).
This is the rollout of TorchRL 0.14.1's `DreamerV3ActorLoss` (its `DreamerEnv` draws the action,
then the prior's sample, at each step, from torch's global generator; so does this).

One batched step per horizon step: N rows go through the actor and the prior together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.losses.dreamer import default_bins, two_hot_decode
from service.models.model import Model
from service.runtime.dreamer.networks import (
    actor_distribution,
    head_logits,
    is_categorical,
    world_model_of,
)


@dataclass
class Imagined:
    """An imagined rollout over rows [N]: latents at s_0 … s_H, actions and rewards of the
    transitions t = 0 … H−1, continue probabilities at s_0 … s_H."""

    state: torch.Tensor  # [N, H+1, S]
    belief: torch.Tensor  # [N, H+1, D]
    action: torch.Tensor  # [N, H, A] as the prior takes it (one-hot for categorical actors)
    reward: torch.Tensor  # [N, H]
    continuation: torch.Tensor  # [N, H+1]

    @property
    def horizon(self) -> int:
        """H."""
        return self.action.shape[1]


def decode_reward(model: Model, logits: torch.Tensor) -> torch.Tensor:
    """The reward head's scalar [N] from its output [N, bins] (two-hot) or [N, 1]."""
    if logits.shape[-1] == 1:
        return logits[:, 0]
    bins = default_bins(logits.shape[-1], dtype=logits.dtype, device=logits.device)
    return two_hot_decode(logits, bins)


def continuation_of(model: Model, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
    """c(s) [N]: σ(continue head), or ones without a continue head."""
    world = world_model_of(model)
    if not world.has_continue:
        return torch.ones(state.shape[0], dtype=state.dtype, device=state.device)
    return torch.sigmoid(head_logits(world["continue"], state, belief)[:, 0])


def imagine(model: Model, state: torch.Tensor, belief: torch.Tensor, horizon: int) -> Imagined:
    """Roll `horizon` steps from latents [N, S], [N, D] (see the module docstring)."""
    world = world_model_of(model)
    prior = world["prior"]
    categorical = is_categorical(model)
    states, beliefs, actions = [state], [belief], []
    for _ in range(horizon):
        dist = actor_distribution(model, state, belief)
        if categorical:
            index = dist.sample()
            action = torch.nn.functional.one_hot(index, dist.logits.shape[-1]).to(belief.dtype)
        else:
            action = dist.rsample()
        _, state, belief = prior(state, belief, action)
        states.append(state)
        beliefs.append(belief)
        actions.append(action)
    state_seq, belief_seq = torch.stack(states, 1), torch.stack(beliefs, 1)
    rows, width, depth = state_seq.shape[0], state_seq.shape[-1], belief_seq.shape[-1]
    # r_t = r̂(s_{t+1}) and c(s_t), each one pass over every imagined latent.
    reward_logits = head_logits(
        world["reward"],
        state_seq[:, 1:].reshape(rows * horizon, width),
        belief_seq[:, 1:].reshape(rows * horizon, depth),
    )
    continuation = continuation_of(
        model,
        state_seq.reshape(rows * (horizon + 1), width),
        belief_seq.reshape(rows * (horizon + 1), depth),
    )
    return Imagined(
        state=state_seq,
        belief=belief_seq,
        action=torch.stack(actions, 1),
        reward=decode_reward(model, reward_logits).reshape(rows, horizon),
        continuation=continuation.reshape(rows, horizon + 1),
    )
