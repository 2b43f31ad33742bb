"""The world model on a replay sequence: the posterior through time, then its loss.

For replay steps t = 0 … T−1 of each sequence ([*B, T], flattened to rows [N, T]) — TorchRL's
`RSSMRolloutV3` layout: `action[t]` is the action taken before `observation[t]` (TorchRL's root
`action` beside `("next", "observation")`), `reward[t]` and `terminated[t]` came with
`observation[t]`, and `is_first[t]` (TorchRL's `is_init`) starts a new episode at t:

    (z, h, a_t) ← 0 where is_first[t]                      (the latent starts at 0)
    prior_logits_t, _, h ← prior(z, h, a_t)                (the prior's sample is drawn, unused)
    posterior_logits_t, z ← posterior(h, encoder(o_t))

then, in one pass each over all posterior latents: the decoder, the reward head, the continue
head, and `service.losses.dreamer.dreamer_model_loss`. The encoder runs once over all steps.
The random draws happen in TorchRL's `RSSMRolloutV3` order (per step: the prior's, then the
posterior's).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from service.losses.dreamer import default_bins, dreamer_model_loss
from service.models.model import Model
from service.runtime.dreamer.networks import head_logits, world_model_of


@dataclass(frozen=True)
class Replay:
    """A replay batch, rows [N, T] (the request's [*B, T] flattened)."""

    observation: dict[str, torch.Tensor]  # each [N, T, *obs]
    action: torch.Tensor  # [N, T, A]
    reward: torch.Tensor  # [N, T]
    is_first: torch.Tensor  # [N, T] bool
    terminated: torch.Tensor  # [N, T] bool


@dataclass
class Observed:
    """The posterior latents [N, T, …] and the world model's loss terms."""

    state: torch.Tensor
    belief: torch.Tensor
    losses: dict[str, torch.Tensor]

    @property
    def total(self) -> torch.Tensor:
        """Σ of the loss terms: what the world model's optimizer minimises."""
        return sum(v for k, v in self.losses.items() if k.startswith("loss_"))  # type: ignore[return-value]


def observe(model: Model, replay: Replay, knobs: dict[str, Any]) -> Observed:
    """Run the posterior through `replay` and compute the world-model loss (module docstring)."""
    world = world_model_of(model)
    spec = world.spec
    rows, steps = replay.reward.shape
    dtype, device = replay.action.dtype, replay.action.device
    flat = {
        key: value.reshape(rows * steps, *value.shape[2:])
        for key, value in replay.observation.items()
    }
    embedding = world["encoder"](*(flat[o.name] for o in spec.observations))
    embedding = embedding.reshape(rows, steps, -1)
    state = torch.zeros(rows, spec.state_size, dtype=dtype, device=device)
    belief = torch.zeros(rows, spec.belief_size, dtype=dtype, device=device)
    priors, posteriors, states, beliefs = [], [], [], []
    for t in range(steps):
        keep = (~replay.is_first[:, t]).to(dtype).unsqueeze(-1)
        state, belief, action = state * keep, belief * keep, replay.action[:, t] * keep
        prior_logits, _, belief = world["prior"](state, belief, action)
        posterior_logits, state = world["posterior"](belief, embedding[:, t])
        priors.append(prior_logits.reshape(rows, spec.num_categoricals, spec.num_classes))
        posteriors.append(posterior_logits.reshape(rows, spec.num_categoricals, spec.num_classes))
        states.append(state)
        beliefs.append(belief)
    state_seq, belief_seq = torch.stack(states, 1), torch.stack(beliefs, 1)
    flat_state = state_seq.reshape(rows * steps, -1)
    flat_belief = belief_seq.reshape(rows * steps, -1)
    decoded = world["decoder"](flat_state, flat_belief)
    decoded = decoded if isinstance(decoded, (tuple, list)) else (decoded,)
    reconstruction = {
        o.name: d.reshape(rows, steps, *o.shape)
        for o, d in zip(spec.observations, decoded, strict=True)
    }
    reward_out = head_logits(world["reward"], flat_state, flat_belief)
    two_hot = reward_out.shape[-1] > 1
    reward_prediction = (
        reward_out.reshape(rows, steps, -1) if two_hot else reward_out.reshape(rows, steps)
    )
    continue_logit = (
        head_logits(world["continue"], flat_state, flat_belief).reshape(rows, steps)
        if world.has_continue
        else None
    )
    losses = dreamer_model_loss(
        torch.stack(priors, 1),
        torch.stack(posteriors, 1),
        reconstruction,
        {k: v.to(dtype) for k, v in replay.observation.items()},
        reward_prediction,
        replay.reward,
        continue_logit=continue_logit,
        terminated=replay.terminated,
        bins=default_bins(reward_out.shape[-1], dtype=dtype, device=device) if two_hot else None,
        **knobs,
    )
    return Observed(state=state_seq, belief=belief_seq, losses=losses)
