"""ComputeAdvantage's work: network evaluation (full or compact form), then the estimator."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from service.errors import InvalidArgument
from service.models.model import Model
from service.runtime.batching import Batcher
from service.runtime.call import CallState
from service.runtime.estimation import EstimatorSpec
from service.runtime.heads import check_structure
from service.runtime.masking import masked_estimate, sanitized, zero_padding
from service.runtime.networks import current_log_prob, network_values
from service.runtime.trajectory import Trajectory


@dataclass(frozen=True)
class AdvantageResult:
    """Estimator outputs, [*B, T] in the reward's dtype, plus what produced them."""

    advantage: torch.Tensor
    value_target: torch.Tensor
    state_value: torch.Tensor | None  # None when the client sent the values
    next_state_value: torch.Tensor | None
    parameter_version: int
    network_ms: float
    estimator_ms: float


def compute_advantage(
    model: Model,
    trajectory: Trajectory,
    spec: EstimatorSpec,
    batcher: Batcher | None = None,
    call: CallState | None = None,
) -> AdvantageResult:
    """Evaluate the networks as needed, then the estimator, under one parameter version.

    With a `batcher`, the value-network pass waits in the model's queue *without* the model's
    lock; the batcher thread takes it around the merged pass and reports the one version that
    pass used. Otherwise the pass runs here under the lock.
    """
    check_structure(model, trajectory)
    trajectory = sanitized(trajectory)  # padding (trajectory.mask) → neutral values
    if spec.needs_log_probs and trajectory.sample_log_prob is None:
        raise InvalidArgument("trajectory.sample_log_prob: required for vtrace (behaviour policy)")
    dtype = trajectory.dtype
    start = time.perf_counter()
    computed = trajectory.state_value is None
    uses_actor = spec.needs_log_probs and trajectory.log_prob is None
    # Per-agent networks take [N, n_agents, *shape] rows, which the batcher does not merge.
    if computed and not uses_actor and batcher is not None and not model.per_agent:
        versions: list[int] = []

        def batched_value(rows: list[torch.Tensor]) -> torch.Tensor:
            values, used = batcher.submit(rows, call)
            versions.append(used)
            return values

        with torch.inference_mode():
            state_value, next_state_value = network_values(model, trajectory, batched_value)
            log_pi = current_log_prob(model, trajectory) if spec.needs_log_probs else None
        version = versions[0]
    else:
        with model.lock, torch.inference_mode():
            version = model.parameter_version
            if computed:
                state_value, next_state_value = network_values(model, trajectory)
            else:
                state_value, next_state_value = trajectory.state_value, trajectory.next_state_value
            log_pi = current_log_prob(model, trajectory) if spec.needs_log_probs else None
    network_done = time.perf_counter()
    advantage, value_target = masked_estimate(
        spec,
        trajectory,
        state_value=state_value.to(dtype),
        next_state_value=next_state_value.to(dtype),
        log_pi=None if log_pi is None else log_pi.to(dtype),
    )
    finished = time.perf_counter()
    return AdvantageResult(
        advantage=advantage,
        value_target=value_target,
        state_value=zero_padding(trajectory, state_value.to(dtype)) if computed else None,
        next_state_value=zero_padding(trajectory, next_state_value.to(dtype)) if computed else None,
        parameter_version=version,
        network_ms=(network_done - start) * 1e3,
        estimator_ms=(finished - network_done) * 1e3,
    )
