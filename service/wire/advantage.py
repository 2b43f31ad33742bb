"""A ComputeAdvantageRequest → (Trajectory, EstimatorSpec); an `AdvantageResult` → response."""

from __future__ import annotations

import math
import time

import torch

from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.advantage import AdvantageResult
from service.runtime.estimation import EstimatorSpec
from service.runtime.trajectory import Trajectory
from service.wire.agents import AgentLayout
from service.wire.codec import decode_trajectory, encode_tensor
from service.wire.estimator import decode_estimator


def decode_advantage_request(
    request: pb.ComputeAdvantageRequest, model: Model
) -> tuple[Trajectory, EstimatorSpec]:
    """The trajectory and the estimator a ComputeAdvantage request asks for."""
    trajectory = decode_trajectory(request.trajectory)
    if request.reduced_precision_observations:
        _widen_observations(trajectory, model)
    spec = decode_estimator(
        request,
        model.manifest.defaults,
        trajectory.batch_shape,
        trajectory.dtype,
        trajectory.n_agents,
    )
    return trajectory, spec


# Sent narrow, computed wide: each pair widens exactly (every float16/bfloat16 is a float32).
_WIDENS = {
    (torch.float16, torch.float32), (torch.float16, torch.float64),
    (torch.bfloat16, torch.float32), (torch.bfloat16, torch.float64),
}  # fmt: skip


def _widen_observations(trajectory: Trajectory, model: Model) -> None:
    """`reduced_precision_observations`: float16/bfloat16 observations become the model's
    float32/float64, exactly; any other dtype is left for the usual check (and its refusal)."""
    known = {spec.name for spec in model.manifest.inputs}
    for observations in (trajectory.observation, trajectory.next_observation):
        for key, tensor in observations.items():
            if key in known and (tensor.dtype, model.input_dtype(key)) in _WIDENS:
                observations[key] = tensor.to(model.input_dtype(key))


def largest_small_request(model: Model, max_bytes: int) -> pb.ComputeAdvantageRequest | None:
    """A ComputeAdvantage request for `model` of at most `max_bytes` carrying as many
    observation rows as fit (compact form, zeros, one trajectory, no episode end): the most
    network work a request that small can ask for. None when not even two steps fit, or the
    model has no value network or per-agent networks."""
    if model.value_network is None or model.per_agent:
        return None
    inputs = model.manifest.inputs
    row_bytes = sum(
        math.prod(spec.shape) * model.input_dtype(spec.name).itemsize for spec in inputs
    )
    dtype = torch.float64 if model.parameter_dtype == torch.float64 else torch.float32
    # Each step: one observation row, a reward and two flags; 1 KiB for the rest.
    steps = (max_bytes - 1024 - row_bytes) // (row_bytes + dtype.itemsize + 2)
    if steps < 2:
        return None
    request = pb.ComputeAdvantageRequest(model_name=model.name)
    trajectory = request.trajectory
    trajectory.form = pb.TRAJECTORY_FORM_COMPACT
    trajectory.reward.CopyFrom(encode_tensor(torch.zeros((1, steps), dtype=dtype)))
    flags = encode_tensor(torch.zeros((1, steps), dtype=torch.bool))
    trajectory.done.CopyFrom(flags)
    trajectory.terminated.CopyFrom(flags)
    for spec in inputs:
        wanted = model.input_dtype(spec.name)
        rows = torch.zeros((1, steps + 1, *spec.shape), dtype=wanted)
        trajectory.observation[spec.name].CopyFrom(encode_tensor(rows))
        none = torch.zeros((0, *spec.shape), dtype=wanted)
        trajectory.next_observation[spec.name].CopyFrom(encode_tensor(none))
    return request


def response_bytes(trajectory: Trajectory) -> int:
    """An upper bound on the encoded response's size: two [*B, T] tensors (four when the server
    computes the values), plus 1 KiB for everything else."""
    per_tensor = trajectory.reward.numel() * trajectory.reward.element_size() + 64
    tensors = 4 if trajectory.state_value is None else 2
    return tensors * per_tensor + 1024


def encode_advantage_response(
    model: Model,
    result: AdvantageResult,
    decode_ms: float,
    encode_started: float,
    n_agents: int = 0,
) -> pb.ComputeAdvantageResponse:
    """The response for `result`; `encode_ms` runs from `encode_started` (perf_counter). With
    `n_agents` the agent-major outputs go back to the wire's [*B, T, n_agents]."""
    wire = AgentLayout(n_agents).to_wire
    response = pb.ComputeAdvantageResponse(
        advantage=encode_tensor(wire(result.advantage)),
        value_target=encode_tensor(wire(result.value_target)),
        model_name=model.name,
        parameter_version=result.parameter_version,
    )
    if result.state_value is not None and result.next_state_value is not None:
        response.state_value.CopyFrom(encode_tensor(wire(result.state_value)))
        response.next_state_value.CopyFrom(encode_tensor(wire(result.next_state_value)))
    response.timing.CopyFrom(
        pb.Timing(
            decode_ms=decode_ms,
            network_ms=result.network_ms,
            estimator_ms=result.estimator_ms,
            encode_ms=(time.perf_counter() - encode_started) * 1e3,
        )
    )
    return response
