"""A ComputeLossRequest → `LossInputs`; a `LossResult` → ComputeLossResponse."""

from __future__ import annotations

from typing import Any

import torch

from service.errors import ArgumentError, InvalidArgument
from service.losses.registry import DEFAULT_LOSS, LOSSES
from service.models.manifest import Defaults
from service.models.model import Model
from service.models.qvalue import TargetUpdateSpec
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.loss import LossInputs, LossResult, LossSpec
from service.runtime.trajectory import Trajectory
from service.wire.agents import AgentLayout
from service.wire.codec import decode_per_step, decode_tensor, encode_tensor
from service.wire.estimator import decode_estimator
from service.wire.options import read_knobs
from service.wire.requests import min_version

#: Estimators an off-policy loss may take for its targets (TorchRL's supported value estimators).
N_STEP_ESTIMATORS = ("td0", "td1", "td_lambda")


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
    loss = decode_loss(request, defaults)
    offpolicy = loss.kind.layout == "transitions"
    chosen = request.WhichOneof("estimator")
    if offpolicy and chosen is not None and chosen not in N_STEP_ESTIMATORS:
        raise InvalidArgument(
            f"estimator: {loss.name} takes TD(0) targets (unset, with the loss's gamma) or "
            f"n-step ones from {list(N_STEP_ESTIMATORS)} over [*B, T] segments, not {chosen}"
        )
    if not offpolicy and (request.return_td_error or request.HasField("target_update")):
        raise InvalidArgument(
            f"return_td_error / target_update: only for off-policy losses, not {loss.name}"
        )
    layout = _layout(trajectory)
    estimator = decode_estimator(request, defaults, steps, dtype, trajectory.n_agents)
    return LossInputs(
        estimator=estimator,
        offpolicy_estimator=estimator if offpolicy and chosen is not None else None,
        loss=loss,
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
        return_td_error=request.return_td_error,
        target_update=decode_target_update(request.target_update)
        if request.HasField("target_update")
        else None,
    )


def _layout(trajectory: Trajectory) -> AgentLayout:
    """The request's agent layout, from the decoded (agent-major [*B, n, T]) trajectory."""
    if not trajectory.n_agents:
        return AgentLayout(0)
    steps = trajectory.batch_shape
    return AgentLayout(trajectory.n_agents, steps[:-2], steps[-1])


def decode_target_update(message: pb.TargetUpdate) -> TargetUpdateSpec:
    """A request's (or GetModel's) target rule: soft τ in (0, 1], or hard every N + 1."""
    rule = message.WhichOneof("rule")
    if rule == "tau":
        if not 0.0 < message.tau <= 1.0:
            raise InvalidArgument(
                f"target_update.tau: expected a value in (0, 1], got {message.tau}"
            )
        return TargetUpdateSpec(rule="soft", tau=message.tau)
    if rule == "hard_interval":
        if message.hard_interval < 0:
            raise InvalidArgument(
                f"target_update.hard_interval: expected an integer ≥ 0, got {message.hard_interval}"
            )
        return TargetUpdateSpec(rule="hard", interval=message.hard_interval)
    raise InvalidArgument("target_update: set tau or hard_interval")


def encode_target_update(spec: TargetUpdateSpec) -> pb.TargetUpdate:
    """The wire form of a target rule."""
    if spec.rule == "soft":
        return pb.TargetUpdate(tau=spec.tau)
    return pb.TargetUpdate(hard_interval=spec.interval)


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
        td_error=encode_tensor(result.td_error) if result.td_error is not None else None,
        targets_updated=result.targets_updated,
    )
