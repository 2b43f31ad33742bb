"""Reduced-precision observation transfer: float16/bfloat16 on the wire, computed in float32."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import torch
from advantage_client._codec import decode_numpy
from advantage_client._request import narrow_observations, prepare

from service.models.demo import demo_networks
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.support.servers import running_server
from tests.support.wire import array, stub

GAMMA, LMBDA = 0.99, 0.95
# The relative rounding error of one element (round to nearest: half the spacing at 1).
UNIT_ROUNDOFF = {"float16": 2.0**-11, "bfloat16": 2.0**-8}


def _batch(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    chain = rng.standard_normal((3, 41, 4)).astype(np.float32)
    done = rng.random((3, 40)) < 0.05
    return {
        "observation": chain[:, :-1],
        "next_observation": np.ascontiguousarray(chain[:, 1:]),
        "reward": rng.standard_normal((3, 40)).astype(np.float32),
        "done": done,
        "terminated": done & (rng.random((3, 40)) < 0.5),
    }


def _request(observation_dtype: str | None, form: str = "full") -> pb.ComputeAdvantageRequest:
    message = prepare(
        model="demo", form=form, observation_dtype=observation_dtype,
        estimator=None, **_batch(),
    ).request  # fmt: skip
    message.gae.gamma.scalar, message.gae.lmbda.scalar = GAMMA, LMBDA
    return pb.ComputeAdvantageRequest.FromString(message.SerializeToString())


def _value_lipschitz() -> float:
    """An upper bound on |V(s) − V(s′)| / ‖s − s′‖₂ for the demo value network: the product of
    its linear layers' spectral norms (tanh is 1-Lipschitz)."""
    value, _ = demo_networks()
    bound = 1.0
    for layer in value:
        if isinstance(layer, torch.nn.Linear):
            bound *= float(torch.linalg.matrix_norm(layer.weight.detach().double(), ord=2))
    return bound


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_narrow_observations_are_computed_in_float32_within_the_bound(dtype: str) -> None:
    with running_server(Settings(rest_port=0)) as server:
        api = stub(server.target)
        exact = api.ComputeAdvantage(_request(None), timeout=60)
        narrow = api.ComputeAdvantage(_request(dtype), timeout=60)
    assert narrow.advantage.dtype == pb.DTYPE_FLOAT32  # computed in the model's dtype
    # The bound (README): each observation element moves by at most u·|s| (u the unit
    # roundoff), so V moves by at most L·u·max‖s‖₂; a GAE step sums (γλ)^k δ with
    # |Δδ| ≤ (1 + γ)·ΔV, so |ΔA| ≤ (1 + γ)·ΔV / (1 − γλ); the value target adds ΔV.
    batch = _batch()
    both = np.concatenate([batch["observation"], batch["next_observation"]])
    largest = float(np.linalg.norm(both, axis=-1).max())
    delta_v = _value_lipschitz() * UNIT_ROUNDOFF[dtype] * largest
    delta_a = (1 + GAMMA) * delta_v / (1 - GAMMA * LMBDA)
    slack = 1e-5  # the float32 arithmetic of both answers
    value_error = (array(narrow.state_value) - array(exact.state_value)).abs().max()
    advantage_error = (array(narrow.advantage) - array(exact.advantage)).abs().max()
    target_error = (array(narrow.value_target) - array(exact.value_target)).abs().max()
    assert 0 < value_error <= delta_v + slack  # rounded, and within the bound
    assert advantage_error <= delta_a + slack
    assert target_error <= delta_a + delta_v + slack


def test_narrow_observations_without_the_flag_are_refused() -> None:
    request = _request("float16")
    request.reduced_precision_observations = False
    with running_server(Settings(rest_port=0)) as server, pytest.raises(grpc.RpcError) as info:
        stub(server.target).ComputeAdvantage(request, timeout=60)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "expected dtype float32, got float16" in info.value.details()


def test_compact_form_narrows_too() -> None:
    request = _request("bfloat16", form="compact")
    assert request.trajectory.form == pb.TRAJECTORY_FORM_COMPACT
    assert request.trajectory.observation["observation"].dtype == pb.DTYPE_BFLOAT16
    with running_server(Settings(rest_port=0)) as server:
        reply = stub(server.target).ComputeAdvantage(request, timeout=60)
    assert np.isfinite(array(reply.advantage).numpy()).all()


@pytest.mark.parametrize(("dtype", "torch_dtype"), [("float16", torch.float16),
                                                     ("bfloat16", torch.bfloat16)])  # fmt: skip
def test_client_rounds_like_torch(dtype: str, torch_dtype: torch.dtype) -> None:
    values = np.concatenate([
        np.random.default_rng(3).standard_normal(1000).astype(np.float32) * 100,
        np.array([0.0, -0.0, 1.0, 65504.0, 1e-6, 3.0e38, np.inf, -np.inf], np.float32),
    ])  # fmt: skip
    request = prepare(
        reward=np.zeros((1, values.size), np.float32), done=np.zeros((1, values.size), bool),
        observation=values.reshape(1, -1, 1), next_observation=values.reshape(1, -1, 1),
        form="full", observation_dtype=dtype,
    ).request  # fmt: skip
    assert request.reduced_precision_observations
    sent = request.trajectory.observation["observation"]
    expected = torch.from_numpy(values).to(torch_dtype).float().numpy()
    got = decode_numpy(sent).reshape(-1)  # bfloat16 comes back widened exactly to float32
    assert sent.dtype == (pb.DTYPE_FLOAT16 if dtype == "float16" else pb.DTYPE_BFLOAT16)
    assert np.array_equal(got.astype(np.float32), expected)


def test_bad_observation_dtype_is_refused_before_sending() -> None:
    with pytest.raises(ValueError, match="observation_dtype"):
        prepare(observation_dtype="int8", **_batch())


def test_narrowing_leaves_non_float_observations_alone() -> None:
    request = prepare(
        reward=np.zeros((1, 3), np.float32), done=np.zeros((1, 3), bool),
        observation=np.arange(3, dtype=np.int32).reshape(1, 3, 1),
        next_observation=np.arange(1, 4, dtype=np.int32).reshape(1, 3, 1), form="full",
    ).request  # fmt: skip
    narrow_observations(request, "float16")
    assert request.trajectory.observation["observation"].dtype == pb.DTYPE_INT32
