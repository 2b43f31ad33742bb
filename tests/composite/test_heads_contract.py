"""A composite actor in the contract: GetModel describes its heads; a request with a head
missing or extra, a head's action outside its support, or log-probabilities per head that do
not name the model's heads gets INVALID_ARGUMENT naming the field, and nothing is applied."""

from __future__ import annotations

import grpc
import pytest
import torch

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import composite as C
from tests.support.servers import running_server
from tests.support.wire import rpc_error, stub, tensor


@pytest.fixture(scope="module")
def server():
    model = C.model(seed=0)
    with running_server(models={"two_heads": model}) as running:
        yield running, model


def test_get_model_describes_the_heads(server) -> None:
    running, _ = server
    info = stub(running.target).GetModel(pb.GetModelRequest(model_name="two_heads")).model
    assert info.action.distribution == pb.DISTRIBUTION_COMPOSITE
    move, aim = info.action.heads
    assert (move.name, move.distribution, move.num_actions, list(move.shape), move.dtype) == (
        "action.move", pb.DISTRIBUTION_CATEGORICAL, 3, [], pb.DTYPE_INT64,
    )  # fmt: skip
    assert (aim.name, aim.distribution, list(aim.shape), aim.dtype, aim.low, aim.high) == (
        "action.aim", pb.DISTRIBUTION_TANH_NORMAL, [2], pb.DTYPE_FLOAT32, -1.0, 1.0,
    )  # fmt: skip


def _loss(message: pb.Trajectory) -> pb.ComputeLossRequest:
    return pb.ComputeLossRequest(model_name="two_heads", trajectory=message, apply_update=True)


def _without(message: pb.Trajectory, head: str) -> pb.Trajectory:
    del message.action_heads[head]
    return message


def _with_extra(message: pb.Trajectory) -> pb.Trajectory:
    message.action_heads["action.fire"].CopyFrom(tensor(torch.zeros(2, 6, dtype=torch.int64)))
    return message


def _replaced(message: pb.Trajectory, head: str, value: torch.Tensor) -> pb.Trajectory:
    message.action_heads[head].CopyFrom(tensor(value))
    return message


def _log_prob_heads(message: pb.Trajectory, names: list[str]) -> pb.Trajectory:
    message.sample_log_prob_heads.clear()
    for name in names:
        message.sample_log_prob_heads[name].CopyFrom(tensor(torch.zeros(2, 6, dtype=C.F64)))
    return message


def _both_log_probs(message: pb.Trajectory) -> pb.Trajectory:
    message.sample_log_prob.CopyFrom(tensor(torch.zeros(2, 6, dtype=C.F64)))
    return message


def _single_action(message: pb.Trajectory) -> pb.Trajectory:
    message.action_heads.clear()
    message.action.CopyFrom(tensor(torch.zeros(2, 6, dtype=torch.int64)))
    return message


MOVE_OUT = torch.full((2, 6), 3, dtype=torch.int64)
AIM_OUT = torch.full((2, 6, 2), 1.5, dtype=C.F64)
CASES = {
    "head missing": (lambda m: _without(m, "action.aim"), "missing ['action.aim']"),
    "head extra": (_with_extra, "unexpected ['action.fire']"),
    "categorical index outside": (
        lambda m: _replaced(m, "action.move", MOVE_OUT),
        "trajectory.action_heads['action.move']: expected indices in [0, 3)",
    ),
    "tanh-normal action outside its bounds": (
        lambda m: _replaced(m, "action.aim", AIM_OUT),
        "trajectory.action_heads['action.aim']: expected values in [-1.0, 1.0]",
    ),
    "head of the wrong shape": (
        lambda m: _replaced(m, "action.aim", torch.zeros(2, 6, 3, dtype=C.F64)),
        "trajectory.action_heads['action.aim']: expected shape [2, 6, 2]",
    ),
    "log-probabilities of other heads": (
        lambda m: _log_prob_heads(m, ["action.move", "action.jump"]),
        "trajectory.sample_log_prob_heads: expected the heads ['action.aim', 'action.move']",
    ),
    "aggregated and per-head log-probabilities": (
        _both_log_probs,
        "send the aggregated log-probability or the per-head ones, not both",
    ),
    "a single action for a composite actor": (
        _single_action,
        "send trajectory.action_heads with the heads",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_heads_are_refused_and_nothing_applied(server, case: str) -> None:
    running, model = server
    change, detail = CASES[case]
    message = change(C.trajectory(C.make_data((2,), steps=6, seed=1), per_head=True))
    before = C.snapshot(model)
    error = rpc_error(stub(running.target).ComputeLoss, _loss(message))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert detail in error.details()
    assert model.parameter_version == 0
    for old, new in zip(before, C.snapshot(model), strict=True):
        assert torch.equal(old, new)


def test_heads_sent_to_a_single_head_model_are_refused(demo_server) -> None:
    message = C.trajectory(C.make_data((2,), steps=6, seed=1), per_head=True)
    message.observation["observation"].CopyFrom(tensor(torch.zeros(2, 6, 4)))
    message.next_observation["observation"].CopyFrom(tensor(torch.zeros(2, 6, 4)))
    message.reward.CopyFrom(tensor(torch.zeros(2, 6)))
    message.sample_log_prob_heads.clear()
    message.sample_log_prob.CopyFrom(tensor(torch.zeros(2, 6)))
    message.action_heads["action.aim"].CopyFrom(tensor(torch.zeros(2, 6, 2)))
    error = rpc_error(
        stub(demo_server.target).ComputeLoss, pb.ComputeLossRequest(trajectory=message)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "trajectory.action_heads: model 'demo' has a single-head actor" in error.details()
