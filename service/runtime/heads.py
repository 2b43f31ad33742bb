"""Composite actors on request data: the heads' distribution from the actor's output, the
request's per-head actions checked against the model, and the request's agent count.

The actor of a composite model returns a mapping head name → the head's parameters: a tensor
(`logits` of a categorical head), a `(loc, scale)` pair, or a mapping `{"loc", "scale"}`. Also
accepted: a flat mapping "<head>.<parameter>" → tensor (what TorchScript can trace), or a flat
tuple in the heads' order (each head's parameters in `service.distributions.PARAMETERS` order).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from service import distributions
from service.composite import CompositeDistribution
from service.dtypes import dtype_name
from service.errors import ArgumentError, FailedPrecondition, InvalidArgument
from service.finite import all_finite
from service.models.manifest import ActionHeadSpec, ActionSpec
from service.models.model import Model
from service.runtime.trajectory import Trajectory

ACTOR_OUTPUT = "actor network output"


def is_composite(spec: ActionSpec | None) -> bool:
    """Whether the model's policy has named heads."""
    return spec is not None and spec.distribution == "composite"


def _head_parameters(head: ActionHeadSpec, raw: object, where: str) -> dict[str, torch.Tensor]:
    names = distributions.PARAMETERS[distributions.DistributionKind(head.distribution)]
    if isinstance(raw, torch.Tensor):
        raw = (raw,)
    if isinstance(raw, Mapping):
        if sorted(raw) != sorted(names):
            raise FailedPrecondition(
                f"{where}[{head.name!r}]: expected the keys {list(names)}, got {sorted(raw)}"
            )
        return {name: raw[name] for name in names}
    if not isinstance(raw, Sequence) or len(raw) != len(names):
        raise FailedPrecondition(
            f"{where}[{head.name!r}]: expected {list(names)} for a {head.distribution} head"
        )
    return dict(zip(names, raw, strict=True))


def head_outputs(spec: ActionSpec, outputs: tuple) -> dict[str, dict[str, torch.Tensor]]:
    """{head: {parameter: [N, ...]}} from the actor's raw outputs."""
    if len(outputs) == 1 and isinstance(outputs[0], Mapping):
        produced = outputs[0]
        names = [head.name for head in spec.heads]
        flat_names = {
            f"{head.name}.{name}": (head.name, name)
            for head in spec.heads
            for name in distributions.PARAMETERS[distributions.DistributionKind(head.distribution)]
        }
        if sorted(produced) == sorted(flat_names) and sorted(produced) != sorted(names):
            grouped: dict[str, dict[str, torch.Tensor]] = {}
            for key, (head_name, name) in flat_names.items():
                grouped.setdefault(head_name, {})[name] = produced[key]
            produced = grouped
        if sorted(produced) != sorted(names):
            raise FailedPrecondition(
                f"{ACTOR_OUTPUT}: expected the heads {names} (the manifest's), got "
                f"{sorted(produced)}"
            )
        return {
            head.name: _head_parameters(head, produced[head.name], ACTOR_OUTPUT)
            for head in spec.heads
        }
    flat = list(outputs)
    params: dict[str, dict[str, torch.Tensor]] = {}
    for head in spec.heads:
        count = len(distributions.PARAMETERS[distributions.DistributionKind(head.distribution)])
        if len(flat) < count:
            raise FailedPrecondition(
                f"{ACTOR_OUTPUT}: too few outputs for the heads "
                f"{[h.name for h in spec.heads]}; return a mapping head → parameters"
            )
        params[head.name] = _head_parameters(head, tuple(flat[:count]), ACTOR_OUTPUT)
        flat = flat[count:]
    if flat:
        raise FailedPrecondition(f"{ACTOR_OUTPUT}: {len(flat)} outputs beyond the heads'")
    return params


def composite_distribution(
    spec: ActionSpec,
    params: Mapping[str, Mapping[str, torch.Tensor]],
    field: str,
    dtype: torch.dtype | None = None,
    batch_shape: tuple[int, ...] | None = None,
) -> CompositeDistribution:
    """The heads' distribution from their parameters ([N, ...] each, or reshaped to
    `batch_shape`), in `dtype` when given; a parameter a head refuses is INVALID_ARGUMENT
    naming `field[<head>]`."""
    heads = {}
    for head in spec.heads:
        values = dict(params[head.name])
        if dtype is not None:
            values = {key: value.to(dtype) for key, value in values.items()}
        if batch_shape is not None:
            values = {
                key: value.reshape(*batch_shape, *value.shape[1:]) for key, value in values.items()
            }
        if head.distribution == "tanh_normal":
            values |= {"low": head.low, "high": head.high}
        try:
            heads[head.name] = distributions.make_distribution(head.distribution, values)
        except ArgumentError as error:
            raise InvalidArgument(f"{field}[{head.name!r}]: {error}") from error
    return CompositeDistribution(heads)


def _check_support(head: ActionHeadSpec, action: torch.Tensor, name: str) -> None:
    if head.distribution == "categorical":
        if action.dtype.is_floating_point or action.dtype == torch.bool:
            raise InvalidArgument(
                f"{name}: expected an integer dtype (categorical indices), got "
                f"{dtype_name(action.dtype)}"
            )
        if action.numel() and bool(((action < 0) | (action >= head.num_actions)).any()):
            raise InvalidArgument(
                f"{name}: expected indices in [0, {head.num_actions}), got "
                f"{int(action.min())}..{int(action.max())}"
            )
        return
    if head.distribution in ("one_hot_categorical", "bernoulli"):
        if action.numel() and bool(((action != 0) & (action != 1)).any()):
            raise InvalidArgument(f"{name}: expected values 0 or 1 ({head.distribution})")
        if head.distribution == "one_hot_categorical" and bool((action.sum(-1) != 1).any()):
            raise InvalidArgument(f"{name}: expected one-hot rows (exactly one 1 each)")
        return
    if not all_finite(action):
        raise InvalidArgument(f"{name}: expected finite values")
    if head.distribution == "tanh_normal" and bool(
        ((action < head.low) | (action > head.high)).any()
    ):
        raise InvalidArgument(
            f"{name}: expected values in [{head.low}, {head.high}] (the head's tanh-normal "
            f"bounds), got {float(action.min())}..{float(action.max())}"
        )


def padded_with_neutral(
    head: ActionHeadSpec | ActionSpec, action: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """`action` [*B, T, *shape] with a valid action of the head at padded steps (index 0, the
    first one-hot row, 0 bits, the normal's 0, the tanh-normal's midpoint), so scoring every
    row (V-trace, IMPALA) never meets an action outside the support; the masked loss ignores
    those rows."""
    if mask is None or tuple(action.shape[: mask.dim()]) != tuple(mask.shape):
        return action
    neutral = torch.zeros(action.shape[mask.dim() :], dtype=action.dtype)
    if head.distribution == "one_hot_categorical" and neutral.numel():
        neutral.view(-1, neutral.shape[-1])[:, 0] = 1
    elif head.distribution == "tanh_normal":
        neutral.fill_((head.low + head.high) / 2)
    view = mask.view(*mask.shape, *(1,) * (action.dim() - mask.dim()))
    return torch.where(view, action, neutral)


def head_actions(model: Model, trajectory: Trajectory) -> dict[str, torch.Tensor]:
    """`trajectory.action_heads` as rows [N, *head_shape] on the device, checked against the
    model's heads (every head exactly once, shape, dtype, support)."""
    spec = model.manifest.action
    assert spec is not None
    if trajectory.action is not None:
        raise InvalidArgument(
            f"trajectory.action: model {model.name!r} has a composite actor; send "
            f"trajectory.action_heads with the heads {[h.name for h in spec.heads]}"
        )
    given = trajectory.action_heads or {}
    names = [head.name for head in spec.heads]
    missing = [name for name in names if name not in given]
    extra = sorted(name for name in given if name not in names)
    if missing or extra:
        raise InvalidArgument(
            f"trajectory.action_heads: model {model.name!r} has the heads {names}; missing "
            f"{missing}, unexpected {extra}"
        )
    steps = trajectory.batch_shape
    rows = {}
    for head in spec.heads:
        action, name = given[head.name], f"trajectory.action_heads[{head.name!r}]"
        expected = (*steps, *head.shape)
        if tuple(action.shape) != expected:
            raise InvalidArgument(
                f"{name}: expected shape {list(expected)} ([*B, T] + the head's shape), got "
                f"{list(action.shape)}"
            )
        if head.distribution != "categorical" and action.dtype != trajectory.dtype:
            raise InvalidArgument(
                f"{name}: expected dtype {dtype_name(trajectory.dtype)} (the reward's), got "
                f"{dtype_name(action.dtype)}"
            )
        valid = action if trajectory.mask is None else action[trajectory.mask]
        _check_support(head, valid, name)
        action = padded_with_neutral(head, action, trajectory.mask)
        rows[head.name] = action.reshape(math.prod(steps), *head.shape).to(
            model.device, non_blocking=True
        )
    return rows


def check_log_prob_heads(model: Model, trajectory: Trajectory) -> None:
    """Per-head log-probabilities must name exactly the model's heads."""
    spec = model.manifest.action
    for field, given in trajectory.log_prob_heads.items():
        if not is_composite(spec):
            raise InvalidArgument(
                f"trajectory.{field}: model {model.name!r} has a single-head actor; send the "
                "log-probability itself"
            )
        assert spec is not None
        names = sorted(head.name for head in spec.heads)
        if sorted(given) != names:
            raise InvalidArgument(
                f"trajectory.{field}: expected the heads {names} (model {model.name!r}), got "
                f"{sorted(given)}"
            )


def check_structure(model: Model, trajectory: Trajectory) -> None:
    """The request's agent count and heads against the model's (before any work)."""
    declared = model.manifest.agents
    if declared and trajectory.n_agents != declared:
        raise InvalidArgument(
            f"trajectory.n_agents: model {model.name!r} serves {declared} agents, got "
            f"{trajectory.n_agents}"
        )
    check_log_prob_heads(model, trajectory)
    if trajectory.action_heads is not None and not is_composite(model.manifest.action):
        raise InvalidArgument(
            f"trajectory.action_heads: model {model.name!r} has a single-head actor; send "
            "trajectory.action"
        )
