"""ComputeLoss's work: losses on the server's networks and, optionally, one optimizer step.

Runs in a worker thread holding the model's lock, so the loss, the update and the version it
reports belong together, and a concurrent ComputeAdvantage sees either the old parameters or
the new ones, never a mix.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from service import distributions
from service.composite import CompositeDistribution
from service.dtypes import dtype_name
from service.errors import ArgumentError, FailedPrecondition, InvalidArgument
from service.losses.registry import LOSSES, LossKind
from service.models.model import Model
from service.models.qvalue import TargetUpdateSpec
from service.runtime.call import CallState
from service.runtime.estimation import EstimatorSpec
from service.runtime.heads import check_structure, composite_distribution, is_composite
from service.runtime.masking import estimator_flags, masked_estimate, sanitized, sequence_weights
from service.runtime.networks import (
    action_distribution,
    distribution_params,
    log_prob_of,
    network_values,
    reshape_actions,
    select_rows,
    step_actions,
    step_rows,
)
from service.runtime.networks import policy as actor_policy
from service.runtime.trajectory import FIELD_OF_ARGUMENT as TRAJECTORY_FIELDS
from service.runtime.trajectory import Trajectory
from service.runtime.update import apply_update
from service.runtime.versions import require_version

# Per-model loss state: KL-PEN's adaptive β.
BETA_STATE = "ppo_kl_beta"
# The losses' arguments beyond the trajectory's, bound from these request fields.
FIELD_OF_ARGUMENT = {
    **TRAJECTORY_FIELDS,
    "advantage": "advantage",
    "value_target": "value_target",
    "old_state_value": "trajectory.state_value",
    "behaviour_dist": "behaviour_distribution",
}


@dataclass(frozen=True)
class LossSpec:
    """Which loss to compute (a `service.losses.registry` name) and its keyword options."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> LossKind:
        """The registry entry."""
        return LOSSES[self.name]


@dataclass(frozen=True)
class LossInputs:
    """What a ComputeLoss request brings besides the trajectory."""

    estimator: EstimatorSpec
    loss: LossSpec
    advantage: torch.Tensor | None = None  # [*B, T]
    value_target: torch.Tensor | None = None  # [*B, T]
    behaviour_params: dict[str, torch.Tensor] | None = None  # ppo_kl: [*B, T, *param_shape]
    apply_update: bool = False
    # Composite actors: TorchRL's composite_lp_aggregate (None = from the log-probabilities sent).
    composite_lp_aggregate: bool | None = None
    expected_version: int | None = None
    min_version: int | None = None  # read-your-writes: this version or a later one
    # Off-policy losses: return the per-sample TD error; the request's target rule (None =
    # the manifest's).
    return_td_error: bool = False
    target_update: TargetUpdateSpec | None = None
    # Off-policy losses: the request's estimator for n-step targets over [*B, T] (None = TD(0)).
    offpolicy_estimator: EstimatorSpec | None = None


@dataclass(frozen=True)
class LossResult:
    """The loss, its metrics, and what the update did."""

    loss: float
    metrics: dict[str, float]
    parameter_version: int
    new_parameter_version: int
    updated: bool
    grad_norm: float
    network_ms: float
    estimator_ms: float
    td_error: torch.Tensor | None = None  # off-policy, on request: [*B]
    targets_updated: bool = False  # off-policy: the update moved the target networks


def _behaviour_distribution(
    model: Model,
    params: dict[str, torch.Tensor] | None,
    steps: tuple[int, ...],
    dtype,
    valid: torch.Tensor | None = None,
) -> torch.distributions.Distribution:
    """The behaviour policy from the request's parameters, [*B, T] + each parameter's shape
    (a composite actor's keyed "<head>.<parameter>"), as rows (the valid ones on a padded
    batch)."""
    spec = model.manifest.action
    assert spec is not None
    if is_composite(spec):
        tails = {
            f"{head.name}.{name}": (
                (head.num_actions,) if head.distribution == "categorical" else tuple(head.shape)
            )
            for head in spec.heads
            for name in distributions.PARAMETERS[distributions.DistributionKind(head.distribution)]
        }
    else:
        tail = (spec.num_actions,) if spec.distribution == "categorical" else tuple(spec.shape)
        tails = {name: tail for name in distribution_params(spec)}
    expected = sorted(tails)
    if not params or sorted(params) != expected:
        raise InvalidArgument(
            f"behaviour_distribution: ppo_kl with a {spec.distribution} actor needs keys "
            f"{expected}, got {sorted(params or {})}"
        )
    rows: dict[str, torch.Tensor] = {}
    for key, tensor in params.items():
        shape = (*steps, *tails[key])
        if tuple(tensor.shape) != shape or tensor.dtype != dtype:
            raise InvalidArgument(
                f"behaviour_distribution[{key!r}]: expected shape {list(shape)} ([*B, T] + "
                f"the actor's parameter shape) in {dtype_name(dtype)}, got "
                f"{list(tensor.shape)} {dtype_name(tensor.dtype)}"
            )
        row = tensor.reshape(math.prod(steps), *tensor.shape[len(steps) :])
        rows[key] = (row if valid is None else row[valid]).to(model.device)
    if is_composite(spec):
        per_head: dict[str, dict[str, torch.Tensor]] = {}
        for key, row in rows.items():
            head, name = key.rsplit(".", 1)
            per_head.setdefault(head, {})[name] = row
        return composite_distribution(spec, per_head, "behaviour_distribution")
    return action_distribution(spec, rows, "behaviour_distribution")


def _advantage(
    trajectory: Trajectory,
    inputs: LossInputs,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    current_log_prob: Callable[[], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantage, value_target) [*B, T]: sent by the client, or from the estimator (on a
    masked batch: per valid segment, `runtime/masking.py`)."""
    if (inputs.advantage is None) != (inputs.value_target is None):
        raise InvalidArgument("advantage / value_target: send both or neither")
    if inputs.advantage is not None and inputs.value_target is not None:
        return inputs.advantage, inputs.value_target
    log_pi = None
    if inputs.estimator.needs_log_probs:
        if trajectory.sample_log_prob is None:
            raise InvalidArgument("trajectory.sample_log_prob: required for vtrace")
        log_pi = current_log_prob().detach().to("cpu").view(trajectory.batch_shape)
    return masked_estimate(
        inputs.estimator,
        trajectory,
        state_value=state_value.detach(),
        next_state_value=next_state_value.detach(),
        log_pi=log_pi,
    )


def _evaluate(
    model: Model, trajectory: Trajectory, inputs: LossInputs
) -> tuple[dict[str, torch.Tensor], float]:
    """Forward passes and the loss; returns the loss outputs and the estimator's time (ms).

    On a masked batch the padding is neutralised first (`runtime/masking.py`) and the loss runs
    on the valid steps only ("steps" layout: those rows; "sequence" layout: weights that give
    every valid step 1/N_valid of the mean), so its means, metrics and gradient are those of
    the unpadded data.
    """
    trajectory = sanitized(trajectory)
    steps, dtype = trajectory.batch_shape, trajectory.dtype
    kind = inputs.loss.kind
    aggregate = inputs.composite_lp_aggregate
    if aggregate is None:  # TorchRL decides from the log-probability it is given
        aggregate = "sample_log_prob_heads" not in trajectory.log_prob_heads

    def policy(
        rows: list[torch.Tensor],
        batch: tuple[int, ...] | None = None,
        valid: torch.Tensor | None = None,
    ):
        dist = actor_policy(model, rows, dtype, batch, steps, valid)
        if isinstance(dist, CompositeDistribution):
            dist.aggregate = aggregate
        return dist

    if kind.needs_sample_log_prob and trajectory.sample_log_prob is None:
        raise InvalidArgument(
            f"trajectory.sample_log_prob: required for {inputs.loss.name} (behaviour policy)"
        )

    def critic(rows: list[torch.Tensor]) -> torch.Tensor:
        assert model.value_network is not None
        out = model.value_network(*rows)
        if model.per_agent:  # [R, n_agents, 1], checked by network_values
            return out
        return out.reshape(out.shape[0], -1).squeeze(-1)

    state_value, next_state_value = network_values(model, trajectory, value_fn=critic)
    state_value, next_state_value = state_value.to(dtype), next_state_value.to(dtype)
    sequence = kind.layout == "sequence"
    action = step_actions(model, trajectory)
    column = lambda x: x.unsqueeze(-1)  # noqa: E731 - TorchRL's trailing feature dimension
    if sequence:
        dist = policy(step_rows(model, trajectory), steps)
        options = dict(inputs.loss.options)
        if trajectory.mask is not None:
            options |= sequence_weights(trajectory)
        return _call_loss(
            inputs.loss,
            dist,
            reshape_actions(action, steps),
            trajectory.sample_log_prob,
            column(state_value),
            column(next_state_value.detach()),
            column(trajectory.reward),
            column(estimator_flags(trajectory)),
            column(trajectory.terminated),
            **options,
        ), 0.0
    rows = step_rows(model, trajectory)
    started = time.perf_counter()
    advantage, value_target = _advantage(
        trajectory,
        inputs,
        state_value,
        next_state_value,
        lambda: log_prob_of(policy(rows), action),
    )
    estimator_ms = (time.perf_counter() - started) * 1e3
    valid = None if trajectory.mask is None else trajectory.mask.reshape(-1)
    pick = (lambda x: x) if valid is None else (lambda x: select_rows(x, valid))
    count = math.prod(steps) if valid is None else int(valid.sum())
    dist = policy(rows, valid=valid)
    action = pick(action)
    old_value = trajectory.state_value if trajectory.state_value is not None else state_value
    options = dict(inputs.loss.options)
    if kind.needs_behaviour_distribution:
        options["behaviour_dist"] = _behaviour_distribution(
            model, inputs.behaviour_params, steps, dtype, valid
        )
    if kind.adaptive_beta:  # the request's β only seeds a model that has none yet
        initial_beta = options.pop("beta", 1.0)
        options["beta"] = model.loss_state.get(BETA_STATE, initial_beta)
    flat = lambda x: pick(x.reshape(math.prod(steps)))  # noqa: E731
    positional = [dist, action]
    if kind.needs_sample_log_prob:
        positional.append(flat(trajectory.sample_log_prob))
    out = _call_loss(
        inputs.loss,
        *positional,
        flat(advantage).reshape(count, 1),
        flat(state_value).reshape(count, 1),
        flat(value_target).reshape(count, 1),
        old_state_value=flat(old_value.detach()).reshape(count, 1),
        **options,
    )
    return out, estimator_ms


def _call_loss(spec: LossSpec, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
    """The loss function of `spec`; an argument it refuses is INVALID_ARGUMENT naming the
    request field the argument came from (or the loss's knob)."""
    try:
        return spec.kind.function(*args, **kwargs)
    except ArgumentError as error:
        field_name = FIELD_OF_ARGUMENT.get(error.argument, f"{spec.name}.{error.argument}")
        if error.argument.startswith("action["):  # a composite head: "action['move']"
            field_name = "trajectory.action_heads" + error.argument.removeprefix("action")
        raise InvalidArgument.from_argument(error, field_name) from error


def compute_loss(
    model: Model,
    trajectory: Trajectory,
    inputs: LossInputs,
    call: CallState | None = None,
    learner: str | None = None,
) -> LossResult:
    """Compute the loss and, with `apply_update`, one transactional optimizer step
    (`service.runtime.update`): a refused step, or a caller that gave up, changes nothing.
    `learner`: the learner this server is a replica of (None on the learner), for the error of
    a `min_version` not reached."""
    if model.actor_network is None or model.value_network is None:
        raise FailedPrecondition(
            f"model {model.name!r}: ComputeLoss needs both a value and an actor network"
        )
    check_structure(model, trajectory)
    call = call or CallState()
    started = time.perf_counter()
    with model.lock:
        version = model.parameter_version
        if inputs.expected_version is not None and inputs.expected_version != version:
            raise FailedPrecondition(
                f"expected_parameter_version: model {model.name!r} is at version {version}, "
                f"not {inputs.expected_version}"
            )
        require_version(model, version, inputs.min_version, learner)
        with torch.set_grad_enabled(inputs.apply_update):
            out, estimator_ms = _evaluate(model, trajectory, inputs)
        total = out["loss"]
        if not bool(torch.isfinite(total)):
            raise InvalidArgument(
                f"{inputs.loss.name}: the loss is not finite ({float(total)}) on finite inputs; "
                f"its terms: { {k: float(v) for k, v in out.items() if k.startswith('loss_')} }"
            )
        grad_norm = 0.0
        if inputs.apply_update:

            def commit() -> None:
                if "beta" in out:
                    model.loss_state[BETA_STATE] = float(out["beta"])
                model.commit_version()

            grad_norm = apply_update(model, total, call, commit)
        new_version = model.parameter_version
    metrics = {key: float(value.detach()) for key, value in out.items() if key != "loss"}
    elapsed = (time.perf_counter() - started) * 1e3
    return LossResult(
        loss=float(total.detach()),
        metrics=metrics,
        parameter_version=version,
        new_parameter_version=new_version,
        updated=inputs.apply_update,
        grad_norm=grad_norm,
        network_ms=elapsed - estimator_ms,
        estimator_ms=estimator_ms,
    )
