"""The Dreamer learner step as a transaction: separate optimizers (each group moved by its own
learning rate and only by its own loss), the slow critic's EMA and the return EMAs committed
with the step, one version per step, and nothing at all changed by a refused step."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from service.errors import Cancelled
from service.models.manifest import OptimizerSpec
from service.runtime.call import CallState
from service.runtime.dreamer.learner import DreamerInputs, compute_dreamer_loss, dreamer_losses
from service.runtime.dreamer.replay import Replay
from service.runtime.dreamer.state import training_state
from service.runtime.dreamer.update import group_parameters
from tests.support.dreamer import make_nets, service_model

LEARNING_RATES = {"actor": 0.1, "critic": 0.2, "world_model": 0.3}
KNOBS = {"gamma": 0.99, "lmbda": 0.95, "imagination_horizon": 4}


def _sgd_model():
    model = service_model(make_nets())
    spec = model.world_model.spec
    spec = dataclasses.replace(
        spec, optimizers={k: OptimizerSpec(name="sgd", lr=v) for k, v in LEARNING_RATES.items()}
    )
    model.world_model.spec = spec
    model.manifest = dataclasses.replace(model.manifest, world_model=spec)
    return model


def _inputs(apply_update: bool = True) -> DreamerInputs:
    generator = torch.Generator().manual_seed(0)
    rows, steps = 3, 5
    is_first = torch.zeros(rows, steps, dtype=torch.bool)
    is_first[:, 0] = True
    replay = Replay(
        observation={"observation": torch.randn(rows, steps, 3, generator=generator).double()},
        action=torch.rand(rows, steps, 1, generator=generator).double(),
        reward=torch.randn(rows, steps, generator=generator).double(),
        is_first=is_first,
        terminated=torch.zeros(rows, steps, dtype=torch.bool),
    )
    value = {**KNOBS, "slow_critic_regularization": 1.0, "slow_critic_rate": 0.25}
    return DreamerInputs(
        "dreamer_v3",
        actor_knobs=KNOBS,
        value_knobs=value,
        replay=replay,
        apply_update=apply_update,
    )


def _snapshot(model) -> dict[str, list[torch.Tensor]]:
    return {g: [p.detach().clone() for p in group_parameters(model, g)] for g in LEARNING_RATES}


def test_each_group_steps_with_its_own_learning_rate_on_its_own_loss() -> None:
    model = _sgd_model()
    inputs = _inputs()
    with torch.enable_grad():
        torch.manual_seed(1)
        steps, _, _, _ = dreamer_losses(model, inputs, 64)
        expected = {
            g: torch.autograd.grad(
                steps[k].loss, group_parameters(model, g), retain_graph=True, allow_unused=True
            )
            for g, k in (("actor", "actor"), ("critic", "critic"), ("world_model", "world_model"))
        }
    before = _snapshot(model)
    slow_before = copy.deepcopy(training_state(model).slow_critic_for(model))
    torch.manual_seed(1)
    result = compute_dreamer_loss(model, inputs)
    assert (result.parameter_version, result.new_parameter_version) == (0, 1)
    after = _snapshot(model)
    for group, lr in LEARNING_RATES.items():
        for old, new, grad in zip(before[group], after[group], expected[group], strict=True):
            step = torch.zeros_like(old) if grad is None else lr * grad
            assert torch.allclose(old - new, step, rtol=1e-9, atol=1e-12), group
    # The slow critic: 0.75 · its old parameters + 0.25 · the stepped critic's.
    slow_after = training_state(model).slow_critic
    for old, new, critic in zip(
        slow_before.parameters(), slow_after.parameters(), after["critic"], strict=True
    ):
        assert torch.allclose(new, 0.75 * old + 0.25 * critic)
    # The return EMAs now hold the step's (they started at 0).
    state = training_state(model)
    assert float(state.return_high) != 0.0 and float(state.return_low) != 0.0
    assert float(state.return_high) == pytest.approx(result.metrics["return_high"])


def test_a_loss_without_update_changes_nothing() -> None:
    model = _sgd_model()
    before = _snapshot(model)
    result = compute_dreamer_loss(model, _inputs(apply_update=False))
    assert not result.updated and result.new_parameter_version == 0
    assert model.dreamer is None or model.dreamer.return_low is None
    for group, tensors in _snapshot(model).items():
        assert all(torch.equal(a, b) for a, b in zip(before[group], tensors, strict=True))


def test_a_caller_that_gave_up_gets_no_step() -> None:
    model = _sgd_model()
    before = _snapshot(model)
    call = CallState()
    call.cancel()
    with pytest.raises(Cancelled):
        compute_dreamer_loss(model, _inputs(), call)
    assert model.parameter_version == 0
    state = training_state(model)
    assert state.return_low is None and state.updates == 0
    for group, tensors in _snapshot(model).items():
        assert all(torch.equal(a, b) for a, b in zip(before[group], tensors, strict=True))
    assert all(not o.state for o in state.optimizers.values())
