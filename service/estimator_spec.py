"""The estimator a request asks for: decoded from the `estimator` oneof, then run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from service import estimators, knobs
from service.codec import decode_per_step
from service.errors import FailedPrecondition, InvalidArgument
from service.models.manifest import Defaults
from service.pb.advantage.v1 import advantage_pb2 as pb

ESTIMATORS = ("td0", "td1", "td_lambda", "gae", "vtrace")
# The maths core names its arguments; a client knows the request fields.
_FIELD_OF_ARGUMENT = {
    "reward": "trajectory.reward",
    "done": "trajectory.done",
    "terminated": "trajectory.terminated",
    "state_value": "trajectory.state_value",
    "next_state_value": "trajectory.next_state_value",
    "log_pi": "trajectory.log_prob",
    "log_mu": "trajectory.sample_log_prob",
}


def _wire_message(error: ValueError, estimator: str) -> str:
    """Rename the maths core's argument ("reward: …") to the request field it came from."""
    message = str(error)
    argument, colon, rest = message.partition(":")
    if colon and argument in _FIELD_OF_ARGUMENT:
        return f"{_FIELD_OF_ARGUMENT[argument]}:{rest}"
    if colon and argument in ("gamma", "lmbda"):
        return f"{estimator}.{argument}:{rest}"
    return f"{estimator}: {message}"


@dataclass(frozen=True)
class EstimatorSpec:
    """Which estimator to run and its keyword arguments (coefficients already [*B, T, 1])."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def needs_log_probs(self) -> bool:
        """V-trace needs the current and the behaviour policy's log-probabilities."""
        return self.name == "vtrace"


def _coefficient(
    message: pb.Coefficient, name: str, steps: tuple[int, ...], dtype: torch.dtype
) -> float | torch.Tensor:
    which = message.WhichOneof("value")
    if which is None:
        raise InvalidArgument(f"{name}: set either scalar or per_step")
    if which == "scalar":
        return knobs.unit_interval(message, "scalar", name)["scalar"]
    return decode_per_step(message.per_step, f"{name}.per_step", steps, dtype).unsqueeze(-1)


def decode_estimator(
    request: pb.ComputeAdvantageRequest,
    defaults: Defaults,
    steps: tuple[int, ...],
    dtype: torch.dtype,
) -> EstimatorSpec:
    """Read the `estimator` oneof (unset = GAE) with the model's defaults for unset knobs."""
    name = request.WhichOneof("estimator") or "gae"
    message = getattr(request, name)
    where = name

    def coefficient(knob: str, default: float) -> float | torch.Tensor:
        if not message.HasField(knob):
            return default
        return _coefficient(getattr(message, knob), f"{where}.{knob}", steps, dtype)

    options: dict[str, Any] = {"gamma": coefficient("gamma", defaults.gamma)}
    if name in ("td0", "td1", "td_lambda"):
        options["average_rewards"] = message.average_rewards
    if name in ("td_lambda", "gae"):
        options["lmbda"] = coefficient("lmbda", defaults.lmbda)
    if name == "gae":
        options["average_gae"] = message.average_gae
    if name == "vtrace":
        options["average_adv"] = message.average_adv
        for knob in ("rho_thresh", "c_thresh", "rho_pg_thresh"):
            options |= knobs.positive(message, knob, where)
        options |= knobs.unit_interval(message, "lmbda", where)
    return EstimatorSpec(name=name, options=options)


def run_estimator(
    spec: EstimatorSpec,
    *,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor,
    log_pi: torch.Tensor | None = None,
    log_mu: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the estimator on [*B, T] tensors; return (advantage, value_target), each [*B, T].

    The maths core takes TorchRL's [*B, T, 1] layout, so a feature dimension is added here.
    """
    columns = {
        "state_value": state_value,
        "next_state_value": next_state_value,
        "reward": reward,
        "done": done,
        "terminated": terminated,
    }
    if spec.needs_log_probs:
        if log_pi is None or log_mu is None:
            raise FailedPrecondition("vtrace: needs log_pi and log_mu")  # caller checks first
        columns |= {"log_pi": log_pi, "log_mu": log_mu}
    kwargs = {key: tensor.unsqueeze(-1) for key, tensor in columns.items()}
    function = getattr(estimators, spec.name)
    try:
        advantage, value_target = function(**kwargs, **spec.options, time_dim=-2)
    except ValueError as error:
        raise InvalidArgument(_wire_message(error, spec.name)) from error
    return advantage.squeeze(-1), value_target.squeeze(-1)
