"""Every user mistake gets its status code and a message naming the field; never INTERNAL."""

from __future__ import annotations

import grpc
import pytest
import torch

from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.support.servers import running_server
from tests.support.wire import full_trajectory, random_batch, rpc_error, stub, tensor

INVALID = grpc.StatusCode.INVALID_ARGUMENT


def request(trajectory: pb.Trajectory, **estimator) -> pb.ComputeAdvantageRequest:
    return pb.ComputeAdvantageRequest(trajectory=trajectory, **estimator)


def base() -> pb.Trajectory:
    return full_trajectory(random_batch((2,), steps=6, seed=1))


def with_field(name: str, value: torch.Tensor) -> pb.Trajectory:
    trajectory = base()
    getattr(trajectory, name).CopyFrom(tensor(value))
    return trajectory


def cases() -> list[tuple[str, pb.ComputeAdvantageRequest, grpc.StatusCode, list[str]]]:
    reward_wrong_length = base()
    reward_wrong_length.reward.raw_data = reward_wrong_length.reward.raw_data[:-4]
    unset_dtype = base()
    unset_dtype.reward.dtype = pb.DTYPE_UNSPECIFIED
    bad_bool = base()
    bad_bool.done.raw_data = b"\x02" + bad_bool.done.raw_data[1:]
    missing_key = base()
    missing_key.observation["pixels"].CopyFrom(missing_key.observation.pop("observation"))
    obs_dtype = base()
    obs_dtype.observation["observation"].CopyFrom(tensor(torch.zeros(2, 6, 4, dtype=torch.float64)))
    obs_shape = base()
    obs_shape.observation["observation"].CopyFrom(tensor(torch.zeros(2, 6, 5)))
    nan_obs = base()
    nan_obs.observation["observation"].CopyFrom(tensor(torch.full((2, 6, 4), float("nan"))))
    terminated_not_done = base()
    terminated_not_done.done.CopyFrom(tensor(torch.zeros(2, 6, dtype=torch.bool)))
    terminated_not_done.terminated.CopyFrom(tensor(torch.ones(2, 6, dtype=torch.bool)))
    nan_reward = with_field("reward", torch.full((2, 6), float("nan")))
    one_value = base()
    one_value.state_value.CopyFrom(tensor(torch.zeros(2, 6)))
    no_sample_log_prob = base()
    no_sample_log_prob.ClearField("sample_log_prob")
    no_action = base()
    no_action.ClearField("action")
    bad_action = base()
    bad_action.action.CopyFrom(tensor(torch.full((2, 6), 5, dtype=torch.int64)))
    gamma_tensor_shape = pb.GAE(gamma=pb.Coefficient(per_step=tensor(torch.ones(2, 5))))
    empty = pb.Trajectory(
        reward=tensor(torch.zeros(2, 0)),
        done=tensor(torch.zeros(2, 0, dtype=torch.bool)),
        state_value=tensor(torch.zeros(2, 0)),
        next_state_value=tensor(torch.zeros(2, 0)),
    )
    # (case id, request, status, words the message must contain)
    return [
        ("no reward", request(pb.Trajectory()), INVALID, ["trajectory.reward", "required"]),
        (
            "reward bytes",
            request(reward_wrong_length),
            INVALID,
            ["trajectory.reward", "44 bytes", "expected 48"],
        ),
        ("unset dtype", request(unset_dtype), INVALID, ["trajectory.reward", "dtype"]),
        (
            "int reward",
            request(with_field("reward", torch.zeros(2, 6, dtype=torch.int64))),
            INVALID,
            ["trajectory.reward", "float32 or float64", "int64"],
        ),
        (
            "done shape",
            request(with_field("done", torch.zeros(2, 5, dtype=torch.bool))),
            INVALID,
            ["trajectory.done", "[2, 6]", "[2, 5]"],
        ),
        (
            "done dtype",
            request(with_field("done", torch.zeros(2, 6))),
            INVALID,
            ["trajectory.done", "bool", "float32"],
        ),
        ("bool bytes", request(bad_bool), INVALID, ["trajectory.done", "0 and 1"]),
        (
            "terminated shape",
            request(with_field("terminated", torch.zeros(6, 2, dtype=torch.bool))),
            INVALID,
            ["trajectory.terminated", "[2, 6]", "[6, 2]"],
        ),
        ("terminated not done", request(terminated_not_done), INVALID, ["terminated", "done"]),
        ("nan reward", request(nan_reward), INVALID, ["trajectory.reward", "finite", "nan"]),
        (
            "value dtype",
            request(with_field("state_value", torch.zeros(2, 6, dtype=torch.float64))),
            INVALID,
            ["trajectory.state_value", "float32", "float64"],
        ),
        (
            "only one value",
            request(one_value),
            INVALID,
            ["state_value", "next_state_value", "both"],
        ),
        (
            "observation key",
            request(missing_key),
            INVALID,
            ["trajectory.observation", "observation", "pixels"],
        ),
        (
            "observation dtype",
            request(obs_dtype),
            INVALID,
            ["trajectory.observation['observation']", "float32", "float64"],
        ),
        (
            "observation shape",
            request(obs_shape),
            INVALID,
            ["trajectory.observation['observation']", "[2, 6, 4]", "[2, 6, 5]"],
        ),
        ("nan observation", request(nan_obs), INVALID, ["trajectory.observation", "NaN"]),
        (
            "gamma range",
            request(base(), gae=pb.GAE(gamma=pb.Coefficient(scalar=1.5))),
            INVALID,
            ["gae.gamma", "[0, 1]", "1.5"],
        ),
        (
            "gamma unset oneof",
            request(base(), gae=pb.GAE(gamma=pb.Coefficient())),
            INVALID,
            ["gae.gamma", "scalar or per_step"],
        ),
        (
            "gamma per-step shape",
            request(base(), gae=gamma_tensor_shape),
            INVALID,
            ["gae.gamma.per_step", "[2, 6]", "[2, 5]"],
        ),
        (
            "lambda range",
            request(base(), td_lambda=pb.TDLambda(lmbda=pb.Coefficient(scalar=-0.1))),
            INVALID,
            ["td_lambda.lmbda", "[0, 1]"],
        ),
        (
            "rho threshold",
            request(base(), vtrace=pb.VTrace(rho_thresh=0.0)),
            INVALID,
            ["vtrace.rho_thresh", "> 0"],
        ),
        (
            "vtrace lambda",
            request(base(), vtrace=pb.VTrace(lmbda=2.0)),
            INVALID,
            ["vtrace.lmbda", "[0, 1]"],
        ),
        (
            "vtrace no behaviour",
            request(no_sample_log_prob, vtrace=pb.VTrace()),
            INVALID,
            ["trajectory.sample_log_prob", "vtrace"],
        ),
        (
            "vtrace no action",
            request(no_action, vtrace=pb.VTrace()),
            INVALID,
            ["trajectory.action", "vtrace"],
        ),
        (
            "vtrace bad action",
            request(bad_action, vtrace=pb.VTrace()),
            INVALID,
            ["trajectory.action"],
        ),
        ("empty", request(empty), INVALID, ["trajectory.reward", "at least one step"]),
        (
            "unknown model",
            pb.ComputeAdvantageRequest(model_name="nope", trajectory=base()),
            grpc.StatusCode.NOT_FOUND,
            ["model_name", "nope", "demo"],
        ),
    ]


@pytest.mark.parametrize(
    ("request_", "code", "words"), [case[1:] for case in cases()], ids=[case[0] for case in cases()]
)
def test_bad_request_gets_its_status_and_names_the_field(
    grpc_target, request_, code, words
) -> None:
    error = rpc_error(stub(grpc_target).ComputeAdvantage, request_)
    assert error.code() == code, error.details()
    for word in words:
        assert word in error.details(), (word, error.details())


def test_get_unknown_model_is_not_found(grpc_target: str) -> None:
    error = rpc_error(stub(grpc_target).GetModel, pb.GetModelRequest(model_name="nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "nope" in error.details()


def test_server_keeps_serving_after_errors(grpc_target: str) -> None:
    api = stub(grpc_target)
    for _, bad, _, _ in cases():
        rpc_error(api.ComputeAdvantage, bad)
    assert api.ComputeAdvantage(request(base())).advantage.shape == [2, 6]


def test_message_over_the_limit_is_resource_exhausted() -> None:
    with running_server(Settings(max_message_mb=0.05)) as server:  # 52,428 bytes
        big = full_trajectory(random_batch((8,), steps=256, seed=0))
        error = rpc_error(stub(server.target).ComputeAdvantage, request(big))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "52428" in error.details()  # names the limit
