"""The `estimator` oneof of a request → `EstimatorSpec`, knobs read through the registry."""

from __future__ import annotations

import torch

from service.errors import InvalidArgument
from service.estimators.registry import DEFAULT_ESTIMATOR, ESTIMATORS
from service.models.manifest import Defaults
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.estimation import EstimatorSpec
from service.wire.agents import AgentLayout
from service.wire.codec import decode_per_step, decode_tensor, dtype_name
from service.wire.options import read_knobs


def _coefficient_reader(
    steps: tuple[int, ...], dtype: torch.dtype, layout: AgentLayout | None = None
):
    def coefficient(message: pb.Coefficient, name: str) -> float | torch.Tensor:
        which = message.WhichOneof("value")
        if which is None:
            raise InvalidArgument(f"{name}: set either scalar or per_step")
        if which == "per_step" and layout is not None and layout.n:
            # With agents: [*B, T] (shared by the agents) or [*B, T, n_agents].
            per_step = layout.flags(
                decode_tensor(message.per_step, f"{name}.per_step"), f"{name}.per_step"
            )
            if per_step.dtype != dtype:
                raise InvalidArgument(
                    f"{name}.per_step: expected dtype {dtype_name(dtype)} (the reward's), got "
                    f"{dtype_name(per_step.dtype)}"
                )
            return per_step.unsqueeze(-1)
        if which == "per_step":
            per_step = decode_per_step(message.per_step, f"{name}.per_step", steps, dtype)
            return per_step.unsqueeze(-1)
        if not 0.0 <= message.scalar <= 1.0:
            raise InvalidArgument(
                f"{name}.scalar: expected a value in [0, 1], got {message.scalar}"
            )
        return message.scalar

    return coefficient


def decode_estimator(
    request: pb.ComputeAdvantageRequest | pb.ComputeLossRequest,
    defaults: Defaults,
    steps: tuple[int, ...],
    dtype: torch.dtype,
    n_agents: int = 0,
) -> EstimatorSpec:
    """Read the `estimator` oneof (unset = GAE) with the model's defaults for unset γ/λ."""
    name = request.WhichOneof("estimator") or DEFAULT_ESTIMATOR
    options = read_knobs(
        getattr(request, name),
        ESTIMATORS[name].knobs,
        name,
        defaults,
        _coefficient_reader(
            steps, dtype, AgentLayout(n_agents, steps[:-2], steps[-1]) if n_agents else None
        ),
    )
    return EstimatorSpec(name=name, options=options)
