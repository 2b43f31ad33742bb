"""The knobs of the contract's estimators and losses: which each takes, their ranges, and how they
are written into a request. Read from the proto's descriptors, so the tables follow the contract.

Used by the option objects (`advantage_client.options`) and by the deprecated keyword knobs; pure
(no I/O).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from google.protobuf.descriptor import FieldDescriptor

from advantage_client._codec import WireArray, encode, to_wire
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client.offpolicy import OFFPOLICY_LOSSES

__all__ = [
    "ESTIMATORS",
    "KNOBS",
    "LOSSES",
    "LOSS_KNOBS",
    "build_estimator",
    "build_loss",
    "check_knobs",
    "check_loss_knobs",
]

# --------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------

_ESTIMATOR_FIELDS = pb.ComputeAdvantageRequest.DESCRIPTOR.oneofs_by_name["estimator"].fields
#: Knobs each estimator takes (the fields of its option class), read from the contract: the fields
#: of the estimator's message in the ComputeAdvantageRequest.estimator oneof.
KNOBS: dict[str, frozenset[str]] = {
    f.name: frozenset(knob.name for knob in f.message_type.fields) for f in _ESTIMATOR_FIELDS
}
ESTIMATORS: tuple[str, ...] = tuple(KNOBS)
_ALL_KNOBS = frozenset().union(*KNOBS.values())
# A loss given one of these (IMPALA aside) was most likely meant for the estimator.
_ESTIMATOR_HINT = " (the estimator's knobs go in its option object, e.g. estimator=GAE(gamma=...))"
_ESTIMATOR_FIELDS_BY_NAME = {f.name: f for f in _ESTIMATOR_FIELDS}
_DOUBLE = FieldDescriptor.TYPE_DOUBLE
_BOOL = FieldDescriptor.TYPE_BOOL


def _knob_field(estimator: str, knob: str) -> FieldDescriptor:
    """The FieldDescriptor of `knob` in the estimator's message."""
    return _ESTIMATOR_FIELDS_BY_NAME[estimator].message_type.fields_by_name[knob]


def _coefficient(value: Any, name: str, reward: WireArray | None) -> pb.Coefficient:
    """A scalar in [0, 1] → Coefficient.scalar; an array → per_step, in the reward's dtype."""
    if isinstance(value, (int, float, np.floating, np.integer)):
        _check_range(name, float(value))
        return pb.Coefficient(scalar=float(value))
    arr = to_wire(value, name=name).array
    if arr.ndim == 0:
        return _coefficient(float(arr), name, reward)
    if reward is None:
        raise ValueError(f"{name}: a per-step coefficient needs the reward (its shape and dtype)")
    if arr.shape == (*reward.shape, 1):  # TorchRL's trailing feature dim
        arr = arr.reshape(reward.shape)
    if arr.shape != reward.shape:
        raise ValueError(
            f"{name}: a per-step coefficient must have the reward's shape {list(reward.shape)}, "
            f"got {list(arr.shape)}"
        )
    if reward.dtype in (pb.DTYPE_FLOAT32, pb.DTYPE_FLOAT64):
        arr = arr.astype(reward.array.dtype, copy=False)
    return pb.Coefficient(per_step=encode(arr, name=name))


def build_estimator(
    request: pb.ComputeAdvantageRequest | pb.ComputeLossRequest,
    estimator: str,
    knobs: Mapping[str, Any],
    reward: WireArray | None,
) -> None:
    """Set the request's estimator oneof from `estimator` and its (non-None) knobs.

    Coefficient knobs (γ, λ of TD/GAE) take a float or a per-step array (checked against and cast
    to the `reward`'s shape and dtype); double knobs (V-trace's thresholds and λ) a float; the
    rest are bools. Raises ValueError for an unknown estimator or an out-of-range value,
    TypeError for a knob the estimator does not take or of the wrong type.
    """
    check_knobs(estimator, knobs)
    msg = getattr(request, estimator)
    msg.SetInParent()  # select the oneof even when no knob is set
    for knob, value in knobs.items():
        if value is None:
            continue
        field = _knob_field(estimator, knob)
        if field.message_type is not None:  # Coefficient
            getattr(msg, knob).CopyFrom(_coefficient(value, knob, reward))
        elif field.type == _DOUBLE:
            setattr(msg, knob, float(value))
        else:
            setattr(msg, knob, bool(value))


def _set_knobs(
    kind: str, name: str, knobs: Mapping[str, Any], table: Mapping[str, frozenset[str]]
) -> Iterator[tuple[str, Any]]:
    """The set (non-None) knobs, once checked that `name` is known and takes each of them."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {', '.join(table)}")
    every = frozenset().union(*table.values())
    for knob, value in knobs.items():
        if knob not in every:
            raise TypeError(f"unknown {kind} knob {knob!r}")
        if value is None:
            continue
        if knob not in table[name]:
            hint = _ESTIMATOR_HINT if kind == "loss" and knob in _ALL_KNOBS else ""
            raise TypeError(
                f"{kind} {name!r} takes no {knob!r}{hint} "
                f"(it takes: {', '.join(sorted(table[name]))})"
            )
        yield knob, value


def check_knobs(estimator: str, knobs: Mapping[str, Any]) -> None:
    """Validate the estimator name, knob names and scalar knob values (no reward needed)."""
    for knob, value in _set_knobs("estimator", estimator, knobs, KNOBS):
        field = _knob_field(estimator, knob)
        if field.type == _BOOL:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{knob} must be a bool, got {type(value).__name__}")
            continue
        scalar = isinstance(value, (int, float, np.floating, np.integer))
        if isinstance(value, (bool, np.bool_)) or (field.type == _DOUBLE and not scalar):
            kind = "a float" if field.type == _DOUBLE else "a float or a per-step array"
            raise TypeError(f"{estimator}'s {knob} must be {kind}, got {type(value).__name__}")
        if scalar:
            _check_range(knob, float(value))


def _check_range(knob: str, value: float) -> None:
    if knob.endswith("_thresh"):
        if not value > 0.0:
            raise ValueError(f"{knob} must be > 0, got {value}")
    elif not 0.0 <= value <= 1.0:
        raise ValueError(f"{knob} must be in [0, 1], got {value}")


# --------------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------

# The trajectory losses (DreamerV3's have their own option classes, advantage_client.dreamer;
# the off-policy ones theirs, advantage_client.offpolicy).
_LOSS_FIELDS = {
    f.name: f
    for f in pb.ComputeLossRequest.DESCRIPTOR.oneofs_by_name["loss"].fields
    if not f.name.startswith("dreamer_v3") and f.name not in OFFPOLICY_LOSSES
}
_OPTION_FIELDS = pb.PolicyLossOptions.DESCRIPTOR.fields_by_name
# Shared PolicyLossOptions a loss ignores (the proto's A2CLoss / ReinforceLoss comments); sending
# them would be silently dropped by the server, so the client refuses them.
_UNUSED_OPTIONS = {
    "a2c": {"normalize_advantage"},
    "reinforce": {"entropy_bonus", "entropy_coeff", "critic_coeff", "normalize_advantage"},
}
# ClipPPOLoss's (clip_epsilon_low, clip_epsilon_high) are one knob: clip_epsilon=(low, high).
_FOLDED = {"clip_epsilon_low", "clip_epsilon_high"}


def _loss_knobs(name: str) -> frozenset[str]:
    fields = _LOSS_FIELDS[name].message_type.fields
    own = {f.name for f in fields if f.name != "options" and f.name not in _FOLDED}
    if any(f.name == "options" for f in fields):
        own |= set(_OPTION_FIELDS) - _UNUSED_OPTIONS.get(name, set())
    return frozenset(own)


#: Knobs each loss takes (the fields of its option class), read from the contract: the fields of
#: the loss's message in ComputeLossRequest.loss, its PolicyLossOptions included.
LOSS_KNOBS: dict[str, frozenset[str]] = {name: _loss_knobs(name) for name in _LOSS_FIELDS}
LOSSES: tuple[str, ...] = tuple(LOSS_KNOBS)

_CRITIC_LOSS = {
    "l1": pb.CRITIC_LOSS_L1,
    "l2": pb.CRITIC_LOSS_L2,
    "smooth_l1": pb.CRITIC_LOSS_SMOOTH_L1,
}
# Value ranges, as the server checks them (service/loss_spec.py).
_POSITIVE = {"clip_value", "clip_epsilon", "dtarg", "increment", "decrement"} | {
    "rho_thresh",
    "c_thresh",
    "rho_pg_thresh",
}
_UNIT = {"gamma", "lmbda"}  # impala's, in [0, 1]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _check_value(loss: str, knob: str, value: Any) -> None:
    if knob in ("entropy_bonus", "normalize_advantage"):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{knob} must be a bool, got {type(value).__name__}")
        return
    if knob == "loss_critic_type":
        if value not in _CRITIC_LOSS:
            raise ValueError(
                f"loss_critic_type must be one of {sorted(_CRITIC_LOSS)}, got {value!r}"
            )
        return
    if knob == "clip_epsilon" and isinstance(value, (tuple, list)):
        if len(value) != 2 or not all(_is_number(v) for v in value):
            raise TypeError(f"clip_epsilon must be a float or a (low, high) pair, got {value!r}")
        low, high = (float(v) for v in value)
        if not (0.0 <= low < 1.0 and high >= 0.0):
            raise ValueError(
                f"clip_epsilon=(low, high) needs 0 ≤ low < 1 and high ≥ 0, got {tuple(value)}"
            )
        return
    if not _is_number(value):
        kind = "a float or a (low, high) pair" if knob == "clip_epsilon" else "a float"
        raise TypeError(f"{loss}'s {knob} must be {kind}, got {type(value).__name__}")
    number = float(value)
    if knob in _POSITIVE:
        ok, expected = number > 0.0, "> 0"
    elif loss == "impala" and knob in _UNIT:
        ok, expected = 0.0 <= number <= 1.0, "in [0, 1]"
    else:
        ok, expected = number >= 0.0, "≥ 0"
    if not ok:
        raise ValueError(f"{knob} must be {expected}, got {value}")


def check_loss_knobs(loss: str, knobs: Mapping[str, Any]) -> None:
    """Validate the loss name, its knob names and values (None = unset); no request needed."""
    for knob, value in _set_knobs("loss", loss, knobs, LOSS_KNOBS):
        _check_value(loss, knob, value)


def build_loss(request: pb.ComputeLossRequest, loss: str, knobs: Mapping[str, Any]) -> None:
    """Set the request's loss oneof from `loss` and its (non-None, checked) knobs."""
    msg = getattr(request, loss)
    msg.SetInParent()  # select the oneof even when no knob is set
    fields = msg.DESCRIPTOR.fields_by_name
    for knob, value in knobs.items():
        if value is None:
            continue
        target = msg if knob in fields or knob == "clip_epsilon" else msg.options
        if knob == "loss_critic_type":
            target.loss_critic_type = _CRITIC_LOSS[value]
        elif knob == "clip_epsilon" and isinstance(value, (tuple, list)):
            msg.clip_epsilon_low, msg.clip_epsilon_high = (float(v) for v in value)
        elif target.DESCRIPTOR.fields_by_name[knob].type == FieldDescriptor.TYPE_BOOL:
            setattr(target, knob, bool(value))
        else:
            setattr(target, knob, float(value))
