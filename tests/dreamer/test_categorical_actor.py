"""A categorical actor in imagination: its actions reach the prior one-hot, REINFORCE learns
it, and the dynamics-backprop form (no gradient through a sampled index) is refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from service.errors import InvalidArgument
from service.models.dreamer_demo import DreamerSizes, LatentHead
from service.models.manifest import ActionSpec
from service.runtime.dreamer.imagination import imagine
from service.runtime.dreamer.learner import DreamerInputs, compute_dreamer_loss, dreamer_losses
from service.runtime.dreamer.update import group_parameters
from tests.support.dreamer import make_nets, service_model

SIZES = DreamerSizes(action=3)
KNOBS = {"gamma": 0.99, "lmbda": 0.95, "imagination_horizon": 4}


def _model():
    nets = make_nets(SIZES)
    nets.actor = LatentHead(SIZES, 3).double()
    model = service_model(nets)
    model.manifest = dataclasses.replace(
        model.manifest, action=ActionSpec(distribution="categorical", num_actions=3)
    )
    return model


def _start(rows: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    state = torch.zeros(rows, SIZES.state, dtype=torch.float64)
    state[:, :: SIZES.num_classes] = 1.0
    return state, torch.randn(rows, SIZES.belief, dtype=torch.float64)


def test_categorical_actions_are_one_hot_and_reinforce_has_a_gradient() -> None:
    model = _model()
    torch.manual_seed(0)
    rollout = imagine(model, *_start(), horizon=4)
    assert rollout.action.shape == (5, 4, 3)
    assert torch.equal(rollout.action.sum(-1), torch.ones(5, 4, dtype=torch.float64))
    knobs = {**KNOBS, "use_reinforce": True}
    inputs = DreamerInputs("dreamer_v3_actor", actor_knobs=knobs, start=_start())
    with torch.enable_grad():
        steps, terms, _, _ = dreamer_losses(model, inputs, 64)
        grads = torch.autograd.grad(steps["actor"].loss, group_parameters(model, "actor"))
    assert any(float(g.abs().max()) > 0 for g in grads)
    assert "loss_actor" in terms


def test_dynamics_backprop_with_a_categorical_actor_is_refused() -> None:
    inputs = DreamerInputs("dreamer_v3_actor", actor_knobs=KNOBS, start=_start())
    with pytest.raises(InvalidArgument, match=r"dreamer_v3_actor\.use_reinforce: .*categorical"):
        compute_dreamer_loss(_model(), inputs)
