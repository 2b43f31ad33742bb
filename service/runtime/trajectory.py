"""A decoded trajectory batch: the domain object every computation starts from."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: The maths core's argument names bound from trajectory fields → the request field, so an
#: `ArgumentError` about one names what the user sent.
FIELD_OF_ARGUMENT = {
    **{
        name: f"trajectory.{name}"
        for name in (
            "reward",
            "done",
            "terminated",
            "state_value",
            "next_state_value",
            "action",
            "sample_log_prob",
            "log_prob",
            "mask",
        )
    },
    "log_pi": "trajectory.log_prob",  # V-trace's current policy
    "log_mu": "trajectory.sample_log_prob",  # V-trace's behaviour policy
}


@dataclass(frozen=True)
class Trajectory:
    """A decoded, shape-checked trajectory batch; per-step tensors are [*B, T].

    Field names are the request's (`trajectory.<name>`), so errors can name what the user sent.
    `compact`: observations are [*B, T + 1, *shape] and `next_observation` holds only the K true
    next observations of truncated steps ([K, *shape]).
    """

    reward: torch.Tensor
    done: torch.Tensor
    terminated: torch.Tensor
    compact: bool
    observation: dict[str, torch.Tensor] = field(default_factory=dict)
    next_observation: dict[str, torch.Tensor] = field(default_factory=dict)
    state_value: torch.Tensor | None = None
    next_state_value: torch.Tensor | None = None
    action: torch.Tensor | None = None
    sample_log_prob: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None
    # Composite actors: per-head actions ([*B, T, *head_shape] each) instead of `action`.
    action_heads: dict[str, torch.Tensor] | None = None
    # [*B, T] bool, False at padded steps (TorchRL's ("collector", "mask")); None = all valid.
    mask: torch.Tensor | None = None
    # The request's agent count (0 = none). With agents the decoder has already moved them into
    # the batch: every tensor here is agent-major, [*B, n_agents, T, ...] (see wire/agents.py).
    n_agents: int = 0
    # Composite actors' per-head log-probabilities (TorchRL's non-aggregate mode), already summed
    # into sample_log_prob / log_prob: request field ("sample_log_prob_heads") → head names.
    log_prob_heads: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """[*B, T]."""
        return tuple(self.reward.shape)

    @property
    def dtype(self) -> torch.dtype:
        """The computation's dtype: the reward's."""
        return self.reward.dtype
