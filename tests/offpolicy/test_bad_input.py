"""Bad off-policy requests: a clear status naming the field, and nothing applied (the version,
the parameters, the targets and log α stay as they were)."""

from __future__ import annotations

import math
from dataclasses import replace

import grpc
import pytest
import torch

from service.errors import Cancelled, InvalidArgument
from service.models.demo import demo_model
from service.models.demo_offpolicy import offpolicy_demo_models
from service.models.manifest import OptimizerSpec
from service.models.targets import attach_offpolicy
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.call import CallState
from service.runtime.offpolicy import compute_offpolicy_loss
from service.runtime.parameters import named_tensors
from service.wire.codec import decode_trajectory, encode_tensor
from service.wire.loss import decode_loss_inputs
from tests.support.offpolicy import make_batch, parameters, stub
from tests.support.servers import running_server

CPU = torch.device("cpu")
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def _discrete(rows: int = 8, seed: int = 0):
    batch = make_batch(rows, 4, lambda g: torch.randint(0, 2, (rows,), generator=g), seed)
    return replace(
        batch,
        observation=batch.observation.float(),
        next_observation=batch.next_observation.float(),
        reward=batch.reward.float(),
    )


def _continuous(rows: int = 8, seed: int = 0):
    batch = make_batch(
        rows, 3, lambda g: torch.rand(rows, 1, generator=g, dtype=torch.float64), seed
    )
    return replace(
        batch,
        observation=batch.observation.float(),
        next_observation=batch.next_observation.float(),
        reward=batch.reward.float(),
        action=batch.action.float(),
    )


def _with(trajectory: pb.Trajectory, **tensors: torch.Tensor) -> pb.Trajectory:
    for name, tensor in tensors.items():
        if name in ("observation", "next_observation"):
            getattr(trajectory, name)["observation"].CopyFrom(encode_tensor(tensor))
        else:
            getattr(trajectory, name).CopyFrom(encode_tensor(tensor))
    return trajectory


@pytest.fixture(scope="module")
def server():
    models = {"demo": demo_model(CPU), **offpolicy_demo_models(CPU)}
    with running_server(models=models) as running:
        yield running


def _nan_action():
    batch = _continuous()
    action = batch.action.clone()
    action[3, 0] = math.nan
    return action


CASES = [
    (
        "demo_dqn",
        "dqn",
        pb.DQNLoss(),
        lambda: _with(_discrete().trajectory(), action=torch.tensor([0, 1, 2, 0, 1, 0, 1, 0])),
        INVALID,
        "trajectory.action: expected indices in [0, 2), got 2 at flat index 2",
    ),
    (
        "demo_dqn",
        "dqn",
        pb.DQNLoss(),
        lambda: _with(_discrete().trajectory(), action=torch.tensor([0, -1, 0, 0, 1, 0, 1, 0])),
        INVALID,
        "got -1 at flat index 1",
    ),
    (
        "demo_dqn",
        "dqn",
        pb.DQNLoss(),
        lambda: _with(_discrete().trajectory(), action=torch.zeros(8, 2)),
        INVALID,
        "trajectory.action: expected action indices of shape [8]",
    ),
    (
        "demo_sac",
        "sac",
        pb.SACLoss(),
        lambda: _with(_continuous().trajectory(), action=_nan_action()),
        INVALID,
        "trajectory.action: expected finite values, got NaN/Inf in row 3",
    ),
    (
        "demo",
        "dqn",
        pb.DQNLoss(),
        lambda: _discrete().trajectory(),
        PRECONDITION,
        "model 'demo' has no qvalue_network",
    ),
    (
        "demo_discrete_sac",
        "dqn",
        pb.DQNLoss(),
        lambda: _discrete().trajectory(),
        PRECONDITION,
        "dqn: needs a Q-network ensemble of 1, model 'demo_discrete_sac' has 2",
    ),
    (
        "demo_sac",
        "sac",
        pb.SACLoss(num_qvalue_nets=3),
        lambda: _continuous().trajectory(),
        INVALID,
        "sac.num_qvalue_nets: expected the model's ensemble size 2, got 3",
    ),
    (
        "demo_dqn",
        "sac",
        pb.SACLoss(),
        lambda: _discrete().trajectory(),
        PRECONDITION,
        "sac: needs a state_action Q-network, model 'demo_dqn' has a action_value",
    ),
    (
        "demo_sac",
        "sac",
        pb.SACLoss(),
        lambda: _with(_continuous().trajectory(), next_observation=torch.zeros(7, 3)),
        INVALID,
        "trajectory.next_observation['observation']: expected shape [8, 3]",
    ),
    (
        "demo_sac",
        "sac",
        pb.SACLoss(),
        lambda: _with(_continuous().trajectory(), action=torch.zeros(8, 2)),
        INVALID,
        "trajectory.action: expected shape [8, 1]",
    ),
    (
        "demo_sac",
        "sac",
        pb.SACLoss(),
        lambda: _with(_continuous().trajectory(), done=torch.zeros(9, dtype=torch.bool)),
        INVALID,
        "trajectory.done: expected shape [8]",
    ),
    (
        "demo_sac",
        "sac",
        pb.SACLoss(),
        lambda: _with(_continuous().trajectory(), next_observation=torch.full((8, 3), math.nan)),
        INVALID,
        "trajectory.next_observation['observation']: expected finite values, got NaN/Inf in row 0",
    ),
    (
        "demo_dqn",
        "dqn",
        pb.DQNLoss(loss_function=pb.CRITIC_LOSS_UNSPECIFIED),
        lambda: _discrete().trajectory(),
        INVALID,
        "dqn.loss_function: expected one of",
    ),
    (
        "demo_dqn",
        "dqn",
        pb.DQNLoss(delay_value=False, double_dqn=True),
        lambda: _discrete().trajectory(),
        INVALID,
        "dqn.double_dqn: double_dqn=True requires delay_value=True",
    ),
    (
        "demo_sac",
        "sac",
        pb.SACLoss(alpha_init=-1.0),
        lambda: _continuous().trajectory(),
        INVALID,
        "sac.alpha_init: expected a finite value > 0, got -1.0",
    ),
]


@pytest.mark.parametrize(("model", "loss", "message", "trajectory", "code", "detail"), CASES)
def test_refused_with_a_clear_status_and_nothing_applied(
    server, model, loss, message, trajectory, code, detail
) -> None:
    before = parameters(server.port, model)
    request = pb.ComputeLossRequest(model_name=model, trajectory=trajectory(), apply_update=True)
    getattr(request, loss).CopyFrom(message)
    with pytest.raises(grpc.RpcError) as raised:
        stub(server.port).ComputeLoss(request)
    assert raised.value.code() == code
    assert detail in raised.value.details()
    after = parameters(server.port, model)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    info = stub(server.port).GetModel(pb.GetModelRequest(model_name=model)).model
    assert info.parameter_version == 0


def test_request_fields_that_do_not_fit_the_loss_are_refused(server) -> None:
    trajectory = _discrete().trajectory()
    cases = [
        (
            pb.ComputeLossRequest(
                model_name="demo_dqn", trajectory=trajectory, dqn=pb.DQNLoss(), gae=pb.GAE()
            ),
            "estimator: dqn takes TD(0) targets (unset, with the loss's gamma) or n-step ones",
        ),
        (
            pb.ComputeLossRequest(
                model_name="demo_dqn",
                trajectory=trajectory,
                dqn=pb.DQNLoss(),
                target_update=pb.TargetUpdate(tau=0.0),
            ),
            "target_update.tau: expected a value in (0, 1], got 0.0",
        ),
        (
            pb.ComputeLossRequest(
                model_name="demo_dqn",
                trajectory=trajectory,
                dqn=pb.DQNLoss(),
                target_update=pb.TargetUpdate(),
            ),
            "target_update: set tau or hard_interval",
        ),
        (
            pb.ComputeLossRequest(
                model_name="demo", trajectory=trajectory, ppo=pb.PPOLoss(), return_td_error=True
            ),
            "return_td_error / target_update: only for off-policy losses, not ppo",
        ),
    ]
    for request, detail in cases:
        with pytest.raises(grpc.RpcError) as raised:
            stub(server.port).ComputeLoss(request)
        assert raised.value.code() == INVALID, detail
        assert detail in raised.value.details()


def test_nan_next_observation_of_a_terminated_step_is_accepted(server) -> None:
    """It never enters a target (TorchRL's compact collectors leave it NaN)."""
    batch = _continuous()
    next_observation = batch.next_observation.clone()
    next_observation[batch.terminated] = math.nan
    request = pb.ComputeLossRequest(
        model_name="demo_sac",
        trajectory=_with(batch.trajectory(), next_observation=next_observation),
        sac=pb.SACLoss(seed=0),
    )
    response = stub(server.port).ComputeLoss(request)
    assert math.isfinite(response.loss) and all(math.isfinite(v) for v in response.metrics.values())


def _inputs(model, request: pb.ComputeLossRequest):
    trajectory = decode_trajectory(request.trajectory)
    return trajectory, decode_loss_inputs(request, model, trajectory)


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in named_tensors(model).items()}


def test_a_caller_that_gave_up_gets_nothing_committed() -> None:
    model = offpolicy_demo_models(CPU)["demo_sac"]
    before = _state(model)
    call = CallState()
    call.cancel()
    request = pb.ComputeLossRequest(
        model_name="demo_sac",
        trajectory=_continuous().trajectory(),
        sac=pb.SACLoss(),
        apply_update=True,
    )
    with pytest.raises(Cancelled):
        compute_offpolicy_loss(model, *_inputs(model, request), call)
    assert model.parameter_version == 0
    assert all(torch.equal(v, before[k]) for k, v in _state(model).items())


def test_a_step_to_non_finite_parameters_restores_parameters_targets_and_alpha() -> None:
    """An SGD learning rate of 3e38 (float32's max is 3.4e38) overflows the step: refused after
    the optimizer and the target update ran, so the snapshot must bring back all of them."""
    model = offpolicy_demo_models(CPU)["demo_sac"]
    model = attach_offpolicy(
        replace(model, manifest=replace(model.manifest, optimizer=OptimizerSpec("sgd", lr=3e38)))
    )
    before = _state(model)
    request = pb.ComputeLossRequest(
        model_name="demo_sac",
        trajectory=_continuous().trajectory(),
        sac=pb.SACLoss(alpha_init=0.5, loss_function=pb.CRITIC_LOSS_L2),
        apply_update=True,
        target_update=pb.TargetUpdate(tau=1.0),
    )
    with pytest.raises(InvalidArgument, match="non-finite"):
        compute_offpolicy_loss(model, *_inputs(model, request))
    assert model.parameter_version == 0
    after = _state(model)
    assert all(torch.equal(after[k], before[k]) for k in before), [
        k for k in before if not torch.equal(after[k], before[k])
    ]


def test_a_stale_expected_parameter_version_is_refused(server) -> None:
    before = parameters(server.port, "demo_dqn")
    request = pb.ComputeLossRequest(
        model_name="demo_dqn",
        trajectory=_discrete().trajectory(),
        dqn=pb.DQNLoss(),
        apply_update=True,
        expected_parameter_version=7,
    )
    with pytest.raises(grpc.RpcError) as raised:
        stub(server.port).ComputeLoss(request)
    assert raised.value.code() == PRECONDITION
    assert "is at version 0, not 7" in raised.value.details()
    after = parameters(server.port, "demo_dqn")
    assert all(torch.equal(after[k], before[k]) for k in before)
