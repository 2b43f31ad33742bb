"""A Dreamer model's learner state between updates: optimizers, slow critic, return EMAs.

Created on first use and kept on the model (`Model.dreamer`); changed only by a committed
update (`service.runtime.dreamer.update`), under the model's lock.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from service.models.manifest import OptimizerSpec
from service.models.model import Model
from service.models.world_model import DreamerTrainingState


class LearnerState(DreamerTrainingState):
    """`DreamerTrainingState` with the learner's accessors."""

    def slow_critic_for(self, model: Model) -> nn.Module:
        """The slow (EMA) critic: a frozen copy of the critic, made on first use (TorchRL's
        target parameters start as the critic's)."""
        if self.slow_critic is None:
            assert model.value_network is not None
            slow = copy.deepcopy(model.value_network)
            for parameter in slow.parameters():
                parameter.requires_grad_(False)
            self.slow_critic = slow
        return self.slow_critic

    def return_percentiles(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The EMAs (low, high), each [1], starting at 0."""
        if self.return_low is None or self.return_high is None:
            zero = torch.zeros(1, dtype=like.dtype, device=like.device)
            return zero, zero.clone()
        return self.return_low.to(like.dtype), self.return_high.to(like.dtype)


def training_state(model: Model) -> LearnerState:
    """The model's learner state, created on first use."""
    if model.dreamer is None:
        model.dreamer = LearnerState()
    return model.dreamer


def make_optimizer(spec: OptimizerSpec, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer a manifest's group asks for."""
    if spec.name == "sgd":
        return torch.optim.SGD(
            parameters, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    return torch.optim.Adam(parameters, lr=spec.lr, weight_decay=spec.weight_decay)
