"""A ComputeLossRequest → `LossInputs`; a `LossResult` → ComputeLossResponse."""

from __future__ import annotations

from typing import Any

import torch

from service.errors import ArgumentError, InvalidArgument
from service.losses.registry import DEFAULT_LOSS, LOSSES
from service.models.manifest import Defaults
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.loss import LossInputs, LossResult, LossSpec
from service.runtime.trajectory import Trajectory
from service.wire.agents import AgentLayout
from service.wire.codec import decode_per_step, decode_tensor
from service.wire.estimator import decode_estimator
from service.wire.options import read_knobs
from service.wire.requests import min_version


def _no_coefficient(message: Any, name: str) -> None:  # pragma: no cover - no loss has one
    raise InvalidArgument(f"{name}: not a loss knob")


def decode_loss(request: pb.ComputeLossRequest, defaults: Defaults) -> LossSpec:
    """Read the `loss` oneof (unset = ClipPPOLoss with TorchRL's defaults)."""
    name = request.WhichOneof("loss") or DEFAULT_LOSS
    kind = LOSSES[name]
    options = read_knobs(
        getattr(request, name),
        kind.knobs,
        name,
        defaults,
        _no_coefficient,
        enum_defaults={"loss_critic_type": "smooth_l1"},
    )
    if kind.prepare is not None:
        try:
            options = kind.prepare(options)
        except ArgumentError as error:
            raise InvalidArgument.from_argument(error, f"{name}.{error.argument}") from error
    return LossSpec(name=name, options=options)


def _optional_per_step(
    message: pb.ComputeLossRequest, name: str, trajectory: Trajectory, layout: AgentLayout
) -> torch.Tensor | None:
    if not message.HasField(name):
        return None
    return decode_per_step(
        getattr(message, name),
        name,
        trajectory.batch_shape,
        trajectory.dtype,
        finite=True,
        layout=layout,
        where=trajectory.mask,
    )


def decode_loss_inputs(
    request: pb.ComputeLossRequest, model: Model, trajectory: Trajectory
) -> LossInputs:
    """Everything a ComputeLoss request brings besides the trajectory."""
    steps, dtype = trajectory.batch_shape, trajectory.dtype
    defaults = model.manifest.defaults
    layout = _layout(trajectory)
    return LossInputs(
        estimator=decode_estimator(request, defaults, steps, dtype, trajectory.n_agents),
        loss=decode_loss(request, defaults),
        advantage=_optional_per_step(request, "advantage", trajectory, layout),
        value_target=_optional_per_step(request, "value_target", trajectory, layout),
        behaviour_params={
            key: layout.leading(
                decode_tensor(
                    request.behaviour_distribution[key], f"behaviour_distribution[{key!r}]"
                ),
                f"behaviour_distribution[{key!r}]",
            )
            for key in sorted(request.behaviour_distribution)
        },
        apply_update=request.apply_update,
        composite_lp_aggregate=(
            request.composite_lp_aggregate if request.HasField("composite_lp_aggregate") else None
        ),
        expected_version=(
            request.expected_parameter_version
            if request.HasField("expected_parameter_version")
            else None
        ),
        min_version=min_version(request),
    )


def _layout(trajectory: Trajectory) -> AgentLayout:
    """The request's agent layout, from the decoded (agent-major [*B, n, T]) trajectory."""
    if not trajectory.n_agents:
        return AgentLayout(0)
    steps = trajectory.batch_shape
    return AgentLayout(trajectory.n_agents, steps[:-2], steps[-1])


def encode_loss_response(
    model: Model, result: LossResult, decode_ms: float
) -> pb.ComputeLossResponse:
    """The response for `result`."""
    return pb.ComputeLossResponse(
        loss=result.loss,
        metrics=result.metrics,
        model_name=model.name,
        parameter_version=result.parameter_version,
        updated=result.updated,
        new_parameter_version=result.new_parameter_version,
        grad_norm=result.grad_norm,
        timing=pb.Timing(
            decode_ms=decode_ms,
            network_ms=result.network_ms,
            estimator_ms=result.estimator_ms,
        ),
    )
