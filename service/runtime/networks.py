"""The model's networks on request data: input rows, V(s_t) and V(s_{t+1}), the actor's
distribution and its log-probabilities of the recorded actions.

Everything here takes decoded tensors (a `Trajectory`) and returns tensors on the CPU or the
model's device; errors name the request field (`trajectory.observation[...]`) the data came from.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.distributions import Distribution

from service import distributions
from service.dtypes import dtype_name
from service.errors import ArgumentError, FailedPrecondition, InvalidArgument
from service.finite import all_finite
from service.models.manifest import ActionSpec
from service.models.model import Model
from service.runtime.agent_grid import (
    compact_grid_index,
    from_grid,
    outputs_from_grid,
    rows_to_grid,
    to_grid,
    value_grid,
)
from service.runtime.heads import (
    ACTOR_OUTPUT,
    composite_distribution,
    head_actions,
    head_outputs,
    is_composite,
    padded_with_neutral,
)
from service.runtime.trajectory import Trajectory

#: A step's action rows: one tensor, or a composite actor's {head: tensor}.
Actions = torch.Tensor | dict[str, torch.Tensor]
RowsLike = torch.Tensor | list[torch.Tensor] | dict[str, torch.Tensor]


def _check_inputs(
    model: Model, tensors: dict[str, torch.Tensor], field: str, prefix: tuple[int, ...], what: str
) -> list[torch.Tensor]:
    """Check a Trajectory observation map against the model's inputs; return them in order."""
    expected = [spec.name for spec in model.manifest.inputs]
    if sorted(tensors) != sorted(expected):
        raise InvalidArgument(
            f"{field}: expected keys {sorted(expected)} (model {model.name!r}), "
            f"got {sorted(tensors)}"
        )
    ordered = []
    for spec in model.manifest.inputs:
        tensor, name = tensors[spec.name], f"{field}[{spec.name!r}]"
        shape = (*prefix, *spec.shape)
        if tuple(tensor.shape) != shape:
            raise InvalidArgument(
                f"{name}: expected shape {list(shape)} ({what}), got {list(tensor.shape)}"
            )
        wanted = model.input_dtype(spec.name)
        if tensor.dtype != wanted:
            raise InvalidArgument(
                f"{name}: expected dtype {dtype_name(wanted)}, got {dtype_name(tensor.dtype)}"
            )
        ordered.append(tensor)
    return ordered


def _rows(
    inputs: list[list[torch.Tensor]], model: Model, prefix_dims: list[int]
) -> list[torch.Tensor]:
    """Flatten each group's [*prefix, *shape] inputs to rows and stack groups: one network batch."""
    stacked = []
    for position, spec in enumerate(model.manifest.inputs):
        parts = [
            group[position].reshape(-1, *spec.shape)
            for group, dims in zip(inputs, prefix_dims, strict=True)
            if dims
        ]
        joined = parts[0] if len(parts) == 1 else torch.cat(parts)
        stacked.append(joined.to(model.device, non_blocking=True))
    return stacked


def _require_finite_inputs(
    model: Model,
    inputs: list[torch.Tensor],
    field: str,
    prefix_dims: int,
    used: torch.Tensor | None = None,
) -> None:
    """Refuse NaN/Inf in floating inputs [*prefix, *shape] wherever `used` ([*prefix] bool,
    None = everywhere) says the row's value enters the result."""
    for spec, tensor in zip(model.manifest.inputs, inputs, strict=True):
        if all_finite(tensor):  # the common case, one pass; where a bad row is comes after
            continue
        finite = torch.isfinite(tensor)
        if finite.dim() > prefix_dims:
            finite = finite.flatten(prefix_dims).all(-1)
        bad = ~finite if used is None else ~finite & used
        if bool(bad.any()):
            where = [int(i) for i in bad.nonzero()[0]]
            raise InvalidArgument(
                f"{field}[{spec.name!r}]: NaN/Inf at {where}, a row whose value is used "
                "(non-finite observations are accepted only as next observations of terminated "
                "steps)"
            )


def _require_finite(values: torch.Tensor, field: str) -> None:
    if not all_finite(values):
        raise InvalidArgument(
            f"{field}: the value network returned NaN/Inf for steps whose value is used; "
            "check the observations there"
        )


def _fresh_next_rows(
    observed: list[torch.Tensor], following: list[torch.Tensor], step_dims: int
) -> torch.Tensor:
    """[*B, T] bool: steps whose next observation is not the following step's observation (always
    the last step), i.e. the next observations that need an evaluation of their own."""
    time, horizon = step_dims - 1, observed[0].shape[step_dims - 1]
    repeated: torch.Tensor | None = None
    for now, after in zip(observed, following, strict=True):
        same = after.narrow(time, 0, horizon - 1) == now.narrow(time, 1, horizon - 1)
        same = same.flatten(step_dims).all(-1) if same.dim() > step_dims else same
        repeated = same if repeated is None else repeated & same
    assert repeated is not None
    # After the last step comes no observed step ([*B, 1], also when T = 1).
    never = torch.zeros((*repeated.shape[:-1], 1), dtype=torch.bool)
    return ~torch.cat([repeated, never], dim=-1)


def network_values(
    model: Model,
    trajectory: Trajectory,
    value_fn: Callable[[list[torch.Tensor]], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(V(s_t), V(s_{t+1})) as [*B, T] from one value-network pass over the observations.

    Full form: rows are the B·T observations, then the next observations that are not simply the
    following step's observation (episode ends and the last step): B·T + K' rows, at most 2·B·T.
    Compact form: rows are the B·(T+1) observations, then the K true next observations of
    truncated steps. The bootstrap at terminated steps is never used and is set to 0 (it may be
    NaN in TorchRL's compact storage). `value_fn` replaces `model.value` (ComputeLoss evaluates
    with gradients).
    """
    value_fn = value_fn or model.value
    if model.value_network is None:
        raise FailedPrecondition(
            f"model {model.name!r} has no value network; send trajectory.state_value and "
            "trajectory.next_state_value"
        )
    if model.per_agent:
        return _per_agent_values(model, trajectory, value_fn)
    steps = trajectory.batch_shape
    batch, horizon = steps[:-1], steps[-1]
    terminated, done = trajectory.terminated, trajectory.done
    if trajectory.compact:
        truncated = done & ~terminated
        count = int(truncated.sum())
        observed = _check_inputs(
            model, trajectory.observation, "trajectory.observation", (*batch, horizon + 1),
            "compact form: [*B, T + 1, *shape]",
        )  # fmt: skip
        true_next = _check_inputs(
            model, trajectory.next_observation, "trajectory.next_observation", (count,),
            "compact form: [K, *shape], K = number of truncated steps",
        )  # fmt: skip
        if not all(all_finite(x) for x in observed):  # else say where, if it matters
            _require_finite_inputs(
                model, [x.narrow(len(batch), 0, horizon) for x in observed],
                "trajectory.observation", len(steps),
            )  # fmt: skip
            last = [x.narrow(len(batch), horizon, 1).squeeze(len(batch)) for x in observed]
            bootstrapped = ~terminated.narrow(len(batch), horizon - 1, 1).squeeze(len(batch))
            _require_finite_inputs(
                model, last, "trajectory.observation", len(batch), bootstrapped
            )  # the T + 1st observation only bootstraps the last step
        _require_finite_inputs(model, true_next, "trajectory.next_observation", 1)
        rows = _rows([observed, true_next], model, [math.prod(steps) + math.prod(batch), count])
        values = value_fn(rows).to("cpu", non_blocking=False)
        chained = values[: math.prod(batch) * (horizon + 1)].view(*batch, horizon + 1)
        # Contiguous copies ([*B, T], a few hundred bytes for small calls) let the estimator take
        # its small-call path (`estimators._backend.fast_rows`), not the strided-view one.
        state_value, next_state_value = chained[..., :-1].contiguous(), chained[..., 1:]
        if count:
            next_state_value = next_state_value.masked_scatter(truncated, values[-count:])
    else:
        observed = _check_inputs(
            model, trajectory.observation, "trajectory.observation", steps, "[*B, T, *shape]"
        )
        following = _check_inputs(
            model, trajectory.next_observation, "trajectory.next_observation", steps,
            "[*B, T, *shape]",
        )  # fmt: skip
        _require_finite_inputs(model, observed, "trajectory.observation", len(steps))
        _require_finite_inputs(
            model, following, "trajectory.next_observation", len(steps), ~terminated
        )
        # Within an episode next_observation[t] is observation[t + 1]; evaluate each distinct
        # row once (as TorchRL's shifted=True does, but exactly): B·T + K' rows instead of 2·B·T.
        fresh = _fresh_next_rows(observed, following, len(steps))
        count = int(fresh.sum())
        rows = _rows([observed, [x[fresh] for x in following]], model, [math.prod(steps), count])
        values = value_fn(rows).to("cpu", non_blocking=False)
        state_value = values[: math.prod(steps)].view(steps)
        shifted = torch.cat([state_value[..., 1:], state_value[..., :1]], dim=-1)
        next_state_value = shifted.masked_scatter(fresh, values[math.prod(steps) :])
    next_state_value = torch.where(
        terminated, torch.zeros((), dtype=values.dtype), next_state_value
    )
    if not all_finite(values):  # every value is finite, or say which side is not
        _require_finite(state_value, "trajectory.observation")
        _require_finite(next_state_value, "trajectory.next_observation")  # 0 where terminated
    return state_value, next_state_value


VALUE_OUTPUT = "value network output"


def _per_agent_values(
    model: Model,
    trajectory: Trajectory,
    value_fn: Callable[[list[torch.Tensor]], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """`network_values` for per-agent networks (`runtime/agent_grid.py`): one pass over
    [M, n, *shape] step rows. Full form: the M observation steps, then the M next-observation
    steps (each step's row holds every agent, so no row is shared between the two). Compact
    form: the prod(B)·(T + 1) observation steps, then the K truncated steps' true next
    observations. A next observation of a terminated step is never used and enters the pass as
    0 (it may be NaN), so it cannot reach the gradient."""
    steps = trajectory.batch_shape  # [*B, n, T]
    batch, agents, horizon = steps[:-2], steps[-2], steps[-1]
    terminated, done = trajectory.terminated, trajectory.done
    time = len(steps) - 1

    def grid(tensors: list[torch.Tensor], shape: tuple[int, ...]) -> list[torch.Tensor]:
        return [to_grid(x, shape) for x in tensors]

    if trajectory.compact:
        truncated = done & ~terminated
        count = int(truncated.sum())
        observed = _check_inputs(
            model, trajectory.observation, "trajectory.observation", (*batch, agents, horizon + 1),
            "compact form: [*B, T + 1, n_agents, *shape]",
        )  # fmt: skip
        true_next = _check_inputs(
            model, trajectory.next_observation, "trajectory.next_observation", (count,),
            "compact form: [K, n_agents, *shape], K = number of truncated steps",
        )  # fmt: skip
        _require_finite_inputs(
            model, [x.narrow(time, 0, horizon) for x in observed], "trajectory.observation",
            len(steps),
        )  # fmt: skip
        last = [x.narrow(time, horizon, 1).squeeze(time) for x in observed]
        bootstrapped = ~terminated.narrow(time, horizon - 1, 1).squeeze(time)
        _require_finite_inputs(model, last, "trajectory.observation", len(steps) - 1, bootstrapped)
        _require_finite_inputs(model, true_next, "trajectory.next_observation", 1)
        chained_steps = (*batch, agents, horizon + 1)
        step, agent = compact_grid_index(truncated, len(steps) - 2)
        next_grid = []
        for x in true_next:
            placed = x.new_zeros((count // agents, agents, *x.shape[1:]))
            placed[step, agent] = x
            next_grid.append(placed)
        inputs = [
            torch.cat([a, b]).to(model.device, non_blocking=True)
            for a, b in zip(grid(observed, chained_steps), next_grid, strict=True)
        ]
        chained_rows = math.prod(batch) * (horizon + 1)
        values = value_grid(value_fn(inputs), chained_rows + count // agents, agents, VALUE_OUTPUT)
        values = values.to("cpu", non_blocking=False)
        chained = from_grid(values[:chained_rows], chained_steps, VALUE_OUTPUT).view(chained_steps)
        # Contiguous copies ([*B, T], a few hundred bytes for small calls) let the estimator take
        # its small-call path (`estimators._backend.fast_rows`), not the strided-view one.
        state_value, next_state_value = chained[..., :-1].contiguous(), chained[..., 1:]
        if count:
            next_state_value = next_state_value.masked_scatter(
                truncated, values[chained_rows:][step, agent]
            )
    else:
        observed = _check_inputs(
            model, trajectory.observation, "trajectory.observation", steps, "[*B, T, *shape]"
        )
        following = _check_inputs(
            model, trajectory.next_observation, "trajectory.next_observation", steps,
            "[*B, T, *shape]",
        )  # fmt: skip
        _require_finite_inputs(model, observed, "trajectory.observation", len(steps))
        _require_finite_inputs(
            model, following, "trajectory.next_observation", len(steps), ~terminated
        )
        following = [_zero_where(terminated, x) if x.is_floating_point() else x for x in following]
        inputs = [
            torch.cat([a, b]).to(model.device, non_blocking=True)
            for a, b in zip(grid(observed, steps), grid(following, steps), strict=True)
        ]
        rows = math.prod(batch) * horizon
        values = value_grid(value_fn(inputs), 2 * rows, agents, VALUE_OUTPUT)
        values = values.to("cpu", non_blocking=False)
        state_value = from_grid(values[:rows], steps, VALUE_OUTPUT).view(steps)
        next_state_value = from_grid(values[rows:], steps, VALUE_OUTPUT).view(steps)
    next_state_value = torch.where(
        terminated, torch.zeros((), dtype=values.dtype), next_state_value
    )
    _require_finite(state_value, "trajectory.observation")
    _require_finite(next_state_value, "trajectory.next_observation")
    return state_value, next_state_value


def _zero_where(where: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` [*where.shape, *tail] with 0 where `where` is True."""
    view = where.view(*where.shape, *(1,) * (tensor.dim() - where.dim()))
    return torch.where(view, torch.zeros((), dtype=tensor.dtype), tensor)


def step_rows(model: Model, trajectory: Trajectory) -> list[torch.Tensor]:
    """Network input rows for the T steps taken, [prod(*B, T), *shape] each, on the device."""
    steps = trajectory.batch_shape
    observation = trajectory.observation
    if trajectory.compact:  # the T + 1st observation is a bootstrap, not a step the actor took
        time_dim = len(steps) - 1
        observation = {key: obs.narrow(time_dim, 0, steps[-1]) for key, obs in observation.items()}
    inputs = _check_inputs(model, observation, "trajectory.observation", steps, "[*B, T, *shape]")
    return _rows([inputs], model, [math.prod(steps)])


def actor_outputs(
    model: Model,
    rows: list[torch.Tensor],
    steps: tuple[int, ...],
    valid: torch.Tensor | None = None,
) -> tuple:
    """The actor's raw outputs for the step rows of a trajectory of `steps` (`step_rows`), of
    the rows where `valid` [N] is True when given. Shared networks see only those rows; a
    per-agent network sees every step with all its agents (`runtime/agent_grid.py`)."""
    if not model.per_agent:
        return model.actor(rows if valid is None else select_rows(rows, valid))
    if len(steps) < 2:
        raise FailedPrecondition(f"model {model.name!r}: per_agent networks need agent steps")
    outputs = model.actor([rows_to_grid(x, steps) for x in rows])
    spec = model.manifest.action
    if spec is not None and not is_composite(spec):  # [M, n, *param], param as the manifest's
        tail = (spec.num_actions,) if spec.distribution == "categorical" else tuple(spec.shape)
        grid = (math.prod(steps) // steps[-2], steps[-2])  # [M = prod(B)·T, n]
        for output in outputs:
            if tuple(output.shape) != (*grid, *tail):
                raise FailedPrecondition(
                    f"{ACTOR_OUTPUT}: expected shape {[*grid, *tail]} ([N, n_agents, "
                    f"*parameter]: a per_agent actor keeps the agent dimension), got "
                    f"{list(output.shape)}"
                )
    outputs = outputs_from_grid(outputs, steps, ACTOR_OUTPUT)
    assert isinstance(outputs, tuple)
    return outputs if valid is None else tuple(select_rows(list(outputs), valid))


def policy(
    model: Model,
    rows: list[torch.Tensor],
    dtype: torch.dtype,
    batch_shape: tuple[int, ...] | None = None,
    steps: tuple[int, ...] | None = None,
    valid: torch.Tensor | None = None,
) -> Distribution:
    """The actor's distribution over `rows`, the step rows of a trajectory of `steps` (the
    ones where `valid` is True when given), parameters in `dtype`.

    Its batch shape is [N], or `batch_shape` (e.g. [*B, T]) when given.
    """
    spec = model.manifest.action
    if model.actor_network is None or spec is None:
        raise FailedPrecondition(f"model {model.name!r} has no actor network")
    count = len(rows[0]) if rows else 0
    raw = actor_outputs(model, rows, steps or (count,), valid)
    if is_composite(spec):
        params = head_outputs(spec, raw)
        return composite_distribution(spec, params, ACTOR_OUTPUT, dtype, batch_shape)
    outputs = [output.to(dtype) for output in raw]
    if batch_shape is not None:
        outputs = [output.reshape(*batch_shape, *output.shape[1:]) for output in outputs]
    params = dict(zip(distribution_params(spec), outputs, strict=False))
    return action_distribution(spec, params, "actor network output")


def distribution_params(spec: ActionSpec) -> tuple[str, ...]:
    """The actor's outputs, in order: ("logits",) or ("loc", "scale")."""
    return distributions.PARAMETERS[distributions.DistributionKind(spec.distribution)]


def action_distribution(
    spec: ActionSpec, params: dict[str, torch.Tensor], field: str
) -> Distribution:
    """The model's action distribution from its parameters (tanh-normal bounds from `spec`);
    a parameter the distribution refuses is INVALID_ARGUMENT naming `field`."""
    bounds = {"low": spec.low, "high": spec.high} if spec.distribution == "tanh_normal" else {}
    try:
        return distributions.make_distribution(spec.distribution, {**params, **bounds})
    except ArgumentError as error:
        raise InvalidArgument(f"{field}: {error}") from error


def step_actions(model: Model, trajectory: Trajectory) -> Actions:
    """trajectory.action as rows [N, *action_shape] on the device, checked against the model
    (a composite actor's: {head: rows} from trajectory.action_heads)."""
    if is_composite(model.manifest.action):
        return head_actions(model, trajectory)
    if trajectory.action_heads is not None:
        raise InvalidArgument(
            f"trajectory.action_heads: model {model.name!r} has a single-head actor; send "
            "trajectory.action"
        )
    if trajectory.action is None:
        raise InvalidArgument("trajectory.action: required to score actions with the actor")
    steps = trajectory.batch_shape
    spec = model.manifest.action
    action = trajectory.action
    expected = (*steps, *(spec.shape if spec is not None else ()))
    if tuple(action.shape) != expected:
        raise InvalidArgument(
            f"trajectory.action: expected shape {list(expected)}, got {list(action.shape)}"
        )
    if spec is not None:
        action = padded_with_neutral(spec, action, trajectory.mask)
    return action.reshape(math.prod(steps), *action.shape[len(steps) :]).to(
        model.device, non_blocking=True
    )


def current_log_prob(model: Model, trajectory: Trajectory) -> torch.Tensor:
    """log π(a_t | s_t) of the recorded actions under the model's actor, [*B, T]."""
    if trajectory.log_prob is not None:
        return trajectory.log_prob
    if model.actor_network is None:
        raise FailedPrecondition(
            f"vtrace: model {model.name!r} has no actor network; send trajectory.log_prob"
        )
    if trajectory.action is None and trajectory.action_heads is None:
        raise InvalidArgument("trajectory.action: required for vtrace with the server's actor")
    steps = trajectory.batch_shape
    dist = policy(model, step_rows(model, trajectory), trajectory.dtype, steps=steps)
    log_prob = log_prob_of(dist, step_actions(model, trajectory))
    return log_prob.to("cpu").view(trajectory.batch_shape)


def log_prob_of(dist: Distribution, action: Actions) -> torch.Tensor:
    """log π(a) of rows of actions (a composite's: the sum over its heads); an action the
    distribution refuses is INVALID_ARGUMENT naming trajectory.action(_heads)."""
    try:
        return distributions.log_prob(dist, action)  # type: ignore[arg-type]
    except ArgumentError as error:
        field = "trajectory.action" if isinstance(action, torch.Tensor) else "trajectory"
        raise InvalidArgument(f"{field}: {error}") from error


def reshape_actions(action: Actions, steps: tuple[int, ...]) -> Actions:
    """Rows [N, *shape] of actions (or of each head's) → [*steps, *shape]."""
    if isinstance(action, torch.Tensor):
        return action.reshape(*steps, *action.shape[1:])
    return {key: head.reshape(*steps, *head.shape[1:]) for key, head in action.items()}


def select_rows(rows: RowsLike, valid: torch.Tensor) -> RowsLike:
    """The rows where `valid` [N] bool is True: of a tensor, a list of input tensors, or a
    mapping head → tensor (each on its own device)."""
    if isinstance(rows, torch.Tensor):
        return rows[valid.to(rows.device)]
    if isinstance(rows, dict):
        return {key: select_rows(value, valid) for key, value in rows.items()}
    return [select_rows(value, valid) for value in rows]
