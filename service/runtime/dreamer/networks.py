"""The Dreamer model's networks as the learner calls them: rows [N, …] in, tensors out.

Every call is one batched pass over all rows (never a loop over batch rows). The actor and the
critic take the latents (state, belief); see `service.models.world_model` for the world
model's signatures.
"""

from __future__ import annotations

import torch
from torch import nn

from service import distributions
from service.errors import FailedPrecondition
from service.losses.dreamer import default_bins, two_hot_decode
from service.models.model import Model
from service.models.world_model import WorldModel
from service.runtime.networks import action_distribution


def world_model_of(model: Model) -> WorldModel:
    """The model's world model; FAILED_PRECONDITION naming what is missing otherwise."""
    missing = [
        what
        for what, present in (
            ("a world_model section in its manifest", model.world_model is not None),
            ("an actor_network", model.actor_network is not None),
            ("a value_network", model.value_network is not None),
        )
        if not present
    ]
    if missing:
        raise FailedPrecondition(
            f"model {model.name!r}: DreamerV3 losses need {', '.join(missing)} (a world model "
            "with prior, posterior, encoder, decoder and reward networks; see "
            "service/models/world_model.py)"
        )
    return model.world_model


def actor_distribution(
    model: Model, state: torch.Tensor, belief: torch.Tensor
) -> torch.distributions.Distribution:
    """π(·|s) over rows [N]."""
    assert model.manifest.action is not None
    out = model.actor([state, belief])
    params = dict(zip(distributions_params(model), out, strict=True))
    return action_distribution(model.manifest.action, params, "actor_network")


def distributions_params(model: Model) -> tuple[str, ...]:
    """The actor's output names for its distribution kind."""
    assert model.manifest.action is not None
    kind = distributions.DistributionKind(model.manifest.action.distribution)
    return distributions.PARAMETERS[kind]


def is_categorical(model: Model) -> bool:
    """Whether the actor is categorical (its actions reach the prior one-hot)."""
    return model.manifest.action is not None and model.manifest.action.distribution == "categorical"


class Critic:
    """v(s) for rows [N]: the critic's scalar output, or the expectation of its two-hot logits
    when it outputs more than one column (then `logits` are kept for the two-hot loss)."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self._bins: torch.Tensor | None = None

    def __call__(
        self, state: torch.Tensor, belief: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.network(state, belief)
        out = out.reshape(out.shape[0], -1)
        if out.shape[1] == 1:
            return out[:, 0], None
        if self._bins is None or self._bins.numel() != out.shape[1]:
            self._bins = default_bins(out.shape[1], dtype=out.dtype, device=out.device)
        return two_hot_decode(out, self._bins), out


def head_logits(network: nn.Module, state: torch.Tensor, belief: torch.Tensor) -> torch.Tensor:
    """A head's output [N, width]."""
    out = network(state, belief)
    return out.reshape(out.shape[0], -1)
