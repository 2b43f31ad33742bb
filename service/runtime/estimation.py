"""Running the estimator a request asked for on [*B, T] tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from service.errors import ArgumentError, InvalidArgument
from service.estimators.registry import ESTIMATORS, EstimatorKind
from service.runtime.trajectory import FIELD_OF_ARGUMENT


@dataclass(frozen=True)
class EstimatorSpec:
    """Which estimator to run and its keyword arguments (coefficients already [*B, T, 1])."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> EstimatorKind:
        """The registry entry."""
        return ESTIMATORS[self.name]

    @property
    def needs_log_probs(self) -> bool:
        """V-trace needs the current and the behaviour policy's log-probabilities."""
        return self.kind.needs_log_probs


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
    Callers check that V-trace gets `log_pi` and `log_mu`.
    """
    columns = {
        "state_value": state_value,
        "next_state_value": next_state_value,
        "reward": reward,
        "done": done,
        "terminated": terminated,
    }
    if spec.needs_log_probs:
        assert log_pi is not None and log_mu is not None
        columns |= {"log_pi": log_pi, "log_mu": log_mu}
    kwargs = {key: tensor.unsqueeze(-1) for key, tensor in columns.items()}
    try:
        advantage, value_target = spec.kind.function(**kwargs, **spec.options, time_dim=-2)
    except ArgumentError as error:
        field_name = FIELD_OF_ARGUMENT.get(error.argument, f"{spec.name}.{error.argument}")
        raise InvalidArgument.from_argument(error, field_name) from error
    return advantage.squeeze(-1), value_target.squeeze(-1)
