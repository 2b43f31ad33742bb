"""Build a ComputeAdvantageRequest from keyword arguments or a TensorDict; decode the response.

Shared by the sync and the asyncio client: everything here is pure (no I/O), so the clients only
differ in how they send the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from google.protobuf.descriptor import FieldDescriptor

from advantage_client._codec import (
    WireArray,
    decode_numpy,
    decode_torch,
    encode,
    is_tensordict,
    is_torch_tensor,
    to_wire,
)
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client.types import AdvantageResult, Timing

__all__ = [
    "ESTIMATORS",
    "KNOBS",
    "OutputSpec",
    "PreparedCall",
    "build_estimator",
    "compact_observations",
    "decode_response",
    "needs_input_keys",
    "prepare",
]

Estimator = Literal["gae", "td0", "td1", "td_lambda", "vtrace"]
Form = Literal["full", "compact"]

_ESTIMATOR_FIELDS = pb.ComputeAdvantageRequest.DESCRIPTOR.oneofs_by_name["estimator"].fields
#: Knobs each estimator accepts (keyword arguments of compute_advantage), read from the contract:
#: the fields of the estimator's message in the ComputeAdvantageRequest.estimator oneof.
KNOBS: dict[str, frozenset[str]] = {
    f.name: frozenset(knob.name for knob in f.message_type.fields) for f in _ESTIMATOR_FIELDS
}
ESTIMATORS: tuple[str, ...] = tuple(KNOBS)
_ALL_KNOBS = frozenset(
    {"gamma", "lmbda", "average_gae", "average_adv", "average_rewards"}
    | {"rho_thresh", "c_thresh", "rho_pg_thresh"}
).union(*KNOBS.values())
_ESTIMATOR_FIELDS_BY_NAME = {f.name: f for f in _ESTIMATOR_FIELDS}
_DOUBLE = FieldDescriptor.TYPE_DOUBLE
_BOOL = FieldDescriptor.TYPE_BOOL


def _knob_field(estimator: str, knob: str) -> FieldDescriptor:
    """The FieldDescriptor of `knob` in the estimator's message."""
    return _ESTIMATOR_FIELDS_BY_NAME[estimator].message_type.fields_by_name[knob]


# TorchRL's default TensorDict keys.
_REWARD = ("next", "reward")
_DONE = ("next", "done")
_TERMINATED = ("next", "terminated")
_VALUE = "state_value"
_NEXT_VALUE = ("next", "state_value")
_ACTION = "action"
# Older TorchRL wrote "sample_log_prob"; 0.14 defaults to "action_log_prob". First found wins.
_LOG_PROB_KEYS = ("sample_log_prob", "action_log_prob")
_DEFAULT_OBS_KEY = "observation"


# --------------------------------------------------------------------------------------------
# Estimator
# --------------------------------------------------------------------------------------------


def _coefficient(value: Any, name: str, reward: WireArray) -> pb.Coefficient:
    """A scalar in [0, 1] → Coefficient.scalar; an array → per_step, in the reward's dtype."""
    if isinstance(value, (int, float, np.floating, np.integer)):
        _check_range(name, float(value))
        return pb.Coefficient(scalar=float(value))
    w = to_wire(value, name=name)
    arr = w.array
    if arr.ndim == 0:
        return _coefficient(float(arr), name, reward)
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
    reward: WireArray,
) -> None:
    """Set the request's estimator oneof from `estimator` and its (non-None) knobs.

    Coefficient knobs (γ, λ of TD/GAE) take a float or a per-step array; double knobs (V-trace's
    thresholds and λ) a float; the rest are bools. Raises ValueError for an unknown estimator or
    an out-of-range value, TypeError for a knob the estimator does not take or of the wrong type.
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


def check_knobs(estimator: str, knobs: Mapping[str, Any]) -> None:
    """Validate the estimator name, knob names and scalar knob values (no reward needed)."""
    if estimator not in KNOBS:
        raise ValueError(f"unknown estimator {estimator!r}; expected one of {', '.join(KNOBS)}")
    allowed = KNOBS[estimator]
    for knob, value in knobs.items():
        if knob not in _ALL_KNOBS:
            raise TypeError(f"unknown estimator knob {knob!r}")
        if value is None:
            continue
        if knob not in allowed:
            raise TypeError(
                f"estimator {estimator!r} takes no {knob!r} "
                f"(it takes: {', '.join(sorted(allowed))})"
            )
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
# Compact form
# --------------------------------------------------------------------------------------------


def _truncated_mask(done: WireArray, terminated: WireArray | None) -> np.ndarray:
    """Steps that are done but not terminated, [*B, T] bool (none when terminated is absent)."""
    d = done.array.astype(bool, copy=False)
    if terminated is None:
        return np.zeros(d.shape, dtype=bool)
    t = terminated.array.astype(bool, copy=False)
    if t.shape != d.shape:
        raise ValueError(
            f"terminated: expected the done shape {list(d.shape)}, got {list(t.shape)}"
        )
    return d & ~t


def compact_observations(
    observation: Any,
    next_observation: Any,
    done: Any,
    terminated: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Full-form observations → the compact form (see the proto's TRAJECTORY_FORM_COMPACT).

    Args:
        observation: o_t before each step, [*B, T, *obs].
        next_observation: o_{t+1} after each step, [*B, T, *obs].
        done: [*B, T] bool, episode ended after the step.
        terminated: [*B, T] bool, episode reached a terminal state; None = equal to done.

    Returns:
        (observation_compact, next_observation_truncated): [*B, T + 1, *obs] — the T observations
        before each step plus next_observation of the final step at index T — and [K, *obs], the
        next observations of the K truncated steps (done and not terminated) in row-major order of
        their [*B, T] index. Both are numpy arrays in the wire layout (a torch bfloat16 input
        comes back as its int16 bit pattern).
    """
    obs = to_wire(observation, name="observation")
    nxt = to_wire(next_observation, name="next_observation")
    d = to_wire(done, name="done")
    term = None if terminated is None else to_wire(terminated, name="terminated")
    c, k = _compact(obs, nxt, d, term, "observation")
    return c.array, k.array


def _check_chained(obs: np.ndarray, nxt: np.ndarray, done: np.ndarray, nb: int, key: str) -> None:
    """The compact form drops next_observation[t] wherever step t is not done, so it must equal
    observation[t + 1] there; refuse instead of silently sending different data."""
    lead = (slice(None),) * (nb - 1)
    same = nxt[(*lead, slice(None, -1))] == obs[(*lead, slice(1, None))]
    same = same.reshape(*same.shape[:nb], -1).all(axis=-1)
    broken = ~same & ~done[(*lead, slice(None, -1))]
    if broken.any():
        where = tuple(int(i) for i in np.argwhere(broken)[0])
        raise ValueError(
            f"next_observation[{key!r}]: the compact form needs next_observation[t] == "
            f"observation[t + 1] wherever step t is not done; they differ at step {where}. "
            "Send form='full' for such data."
        )


def _compact(
    obs: WireArray,
    nxt: WireArray,
    done: WireArray,
    terminated: WireArray | None,
    key: str,
) -> tuple[WireArray, WireArray]:
    step_shape = done.shape
    nb = len(step_shape)
    if nb == 0:
        raise ValueError("done must have at least the time dimension, got a scalar")
    if obs.shape[:nb] != step_shape:
        raise ValueError(
            f"observation[{key!r}]: expected a leading [*B, T] = {list(step_shape)}, "
            f"got shape {list(obs.shape)}"
        )
    if nxt.shape != obs.shape or nxt.dtype != obs.dtype:
        raise ValueError(
            f"next_observation[{key!r}]: expected the observation's shape {list(obs.shape)}, "
            f"got {list(nxt.shape)}"
        )
    _check_chained(obs.array, nxt.array, np.asarray(done.array, dtype=bool), nb, key)
    last = nxt.array[(slice(None),) * (nb - 1) + (slice(-1, None),)]  # step T-1, kept as a dim
    compact = np.concatenate([obs.array, last], axis=nb - 1)
    mask = _truncated_mask(done, terminated).reshape(-1)
    flat = nxt.array.reshape(-1, *obs.shape[nb:])
    return WireArray(compact, obs.dtype), WireArray(np.ascontiguousarray(flat[mask]), obs.dtype)


# --------------------------------------------------------------------------------------------
# Request
# --------------------------------------------------------------------------------------------


@dataclass
class OutputSpec:
    """What kind of result the caller gets back."""

    kind: Literal["numpy", "torch", "tensordict"]
    device: Any = None
    tensordict: Any = None


@dataclass
class PreparedCall:
    """A request ready to send and how to decode its response."""

    request: pb.ComputeAdvantageRequest
    output: OutputSpec


def _as_obs_map(x: Any, default_key: str) -> dict[str, Any]:
    if x is None:
        return {}
    if isinstance(x, Mapping) and not is_tensordict(x):
        return dict(x)
    return {default_key: x}


def _fill_trajectory(
    traj: pb.Trajectory,
    *,
    reward: WireArray,
    done: WireArray,
    terminated: WireArray | None,
    observation: Mapping[str, Any],
    next_observation: Mapping[str, Any],
    tensors: Mapping[str, Any],
    form: str,
) -> None:
    """Encode everything into `traj`, building the compact form when asked."""
    if form not in ("full", "compact"):
        raise ValueError(f"form must be 'full' or 'compact', got {form!r}")
    traj.reward.CopyFrom(encode(reward, name="reward"))
    traj.done.CopyFrom(encode(done, name="done"))
    if terminated is not None:
        traj.terminated.CopyFrom(encode(terminated, name="terminated"))
    for name, value in tensors.items():
        if value is not None:
            getattr(traj, name).CopyFrom(encode(value, name=name))
    if form == "full":
        traj.form = pb.TRAJECTORY_FORM_FULL
        for key, value in observation.items():
            traj.observation[key].CopyFrom(encode(value, name=f"observation[{key!r}]"))
        for key, value in next_observation.items():
            traj.next_observation[key].CopyFrom(encode(value, name=f"next_observation[{key!r}]"))
        return
    traj.form = pb.TRAJECTORY_FORM_COMPACT
    step_shape = reward.shape
    nb = len(step_shape)
    compact_step = (*step_shape[:-1], step_shape[-1] + 1) if nb else ()
    extra_next = set(next_observation) - set(observation)
    if extra_next:
        raise ValueError(f"next_observation has keys {sorted(extra_next)} not in observation")
    for key, value in observation.items():
        obs = to_wire(value, name=f"observation[{key!r}]")
        nxt_value = next_observation.get(key)
        if obs.shape[:nb] == step_shape:  # full form: build the compact one
            if nxt_value is None:
                raise ValueError(
                    f"form='compact' from full-form observations needs next_observation[{key!r}]"
                )
            nxt = to_wire(nxt_value, name=f"next_observation[{key!r}]")
            obs, nxt = _compact(obs, nxt, done, terminated, key)
        elif obs.shape[:nb] == compact_step:  # already compact
            if nxt_value is None:
                k = int(_truncated_mask(done, terminated).sum())
                if k:
                    raise ValueError(
                        f"next_observation[{key!r}] is needed at the {k} truncated steps"
                    )
                empty = np.empty((0, *obs.shape[nb:]), dtype=obs.array.dtype)
                nxt = WireArray(empty, obs.dtype)
            else:
                nxt = to_wire(nxt_value, name=f"next_observation[{key!r}]")
        else:
            raise ValueError(
                f"observation[{key!r}]: expected a leading {list(step_shape)} (full form) or "
                f"{list(compact_step)} (compact form), got shape {list(obs.shape)}"
            )
        traj.observation[key].CopyFrom(encode(obs, name=f"observation[{key!r}]"))
        traj.next_observation[key].CopyFrom(encode(nxt, name=f"next_observation[{key!r}]"))


def needs_input_keys(
    data: Any, estimator: str, in_keys: Sequence[str] | None, recompute_values: bool
) -> bool:
    """Whether a TensorDict call must first learn the model's input keys (GetModel)."""
    if in_keys is not None or not is_tensordict(data):
        return False
    has_values = data.get(_VALUE, None) is not None and data.get(_NEXT_VALUE, None) is not None
    return estimator == "vtrace" or recompute_values or not has_values


def _td_step(td: Any, key: Any, name: str) -> Any:
    """A per-step entry of a TensorDict, [*B, T] or [*B, T, 1] → [*B, T]; None when absent."""
    value = td.get(key, None)
    if value is None:
        return None
    batch = tuple(td.batch_size)
    shape = tuple(value.shape)
    if shape == (*batch, 1):
        return value.squeeze(-1)
    if shape == batch:
        return value
    raise ValueError(
        f"TensorDict entry {key!r} ({name}): expected shape {[*batch, 1]} or {list(batch)}, "
        f"got {list(shape)}"
    )


def prepare(
    data: Any = None,
    *,
    model: str = "",
    estimator: str = "gae",
    knobs: Mapping[str, Any],
    form: str = "full",
    in_keys: Sequence[str] | None = None,
    recompute_values: bool = False,
    reward: Any = None,
    done: Any = None,
    terminated: Any = None,
    observation: Any = None,
    next_observation: Any = None,
    state_value: Any = None,
    next_state_value: Any = None,
    action: Any = None,
    sample_log_prob: Any = None,
    log_prob: Any = None,
) -> PreparedCall:
    """Validate the arguments of compute_advantage and build the request (see the clients)."""
    check_knobs(estimator, knobs)
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, got {type(model).__name__}")
    arrays = {
        "reward": reward,
        "done": done,
        "terminated": terminated,
        "observation": observation,
        "next_observation": next_observation,
        "state_value": state_value,
        "next_state_value": next_state_value,
        "action": action,
        "sample_log_prob": sample_log_prob,
        "log_prob": log_prob,
    }
    request = pb.ComputeAdvantageRequest(model_name=model)
    if data is not None:
        if not is_tensordict(data):
            raise TypeError(
                "the positional argument must be a TensorDict; pass arrays by keyword "
                f"(reward=..., done=...), got {type(data).__name__}"
            )
        given = sorted(k for k, v in arrays.items() if v is not None)
        if given:
            raise TypeError(f"pass either a TensorDict or arrays, not both (got {given})")
        return _prepare_tensordict(request, data, estimator, knobs, form, in_keys, recompute_values)
    if in_keys is not None and len(in_keys) != 1 and not isinstance(observation, Mapping):
        raise ValueError("in_keys names the single observation key for array inputs")
    if recompute_values:
        state_value = next_state_value = None
    missing = [k for k in ("reward", "done") if arrays[k] is None]
    if missing:
        raise TypeError(f"compute_advantage() needs {' and '.join(missing)}")
    if (state_value is None) != (next_state_value is None):
        raise ValueError("pass both state_value and next_state_value, or neither")
    output = (
        OutputSpec("torch", device=reward.device)
        if is_torch_tensor(reward)
        else OutputSpec("numpy")
    )
    default_key = in_keys[0] if in_keys else _DEFAULT_OBS_KEY
    r = to_wire(reward, name="reward")
    d = to_wire(done, name="done")
    t = None if terminated is None else to_wire(terminated, name="terminated")
    build_estimator(request, estimator, knobs, r)
    _fill_trajectory(
        request.trajectory,
        reward=r,
        done=d,
        terminated=t,
        observation=_as_obs_map(observation, default_key),
        next_observation=_as_obs_map(next_observation, default_key),
        tensors={
            "state_value": state_value,
            "next_state_value": next_state_value,
            "action": action,
            "sample_log_prob": sample_log_prob,
            "log_prob": log_prob,
        },
        form=form,
    )
    return PreparedCall(request, output)


def _prepare_tensordict(
    request: pb.ComputeAdvantageRequest,
    td: Any,
    estimator: str,
    knobs: Mapping[str, Any],
    form: str,
    in_keys: Sequence[str] | None,
    recompute_values: bool,
) -> PreparedCall:
    if td.batch_dims < 1:
        raise ValueError("the TensorDict needs batch_size [*B, T] (time last), got []")
    reward = _td_step(td, _REWARD, "reward")
    done = _td_step(td, _DONE, "done")
    if reward is None or done is None:
        missing = [str(k) for k, v in ((_REWARD, reward), (_DONE, done)) if v is None]
        raise KeyError(f"the TensorDict has no {' and '.join(missing)}")
    terminated = _td_step(td, _TERMINATED, "terminated")
    tensors: dict[str, Any] = {}
    value = _td_step(td, _VALUE, "state_value")
    next_value = _td_step(td, _NEXT_VALUE, "next state_value")
    send_values = not recompute_values and value is not None and next_value is not None
    if send_values:
        tensors["state_value"] = value
        tensors["next_state_value"] = next_value
    if estimator == "vtrace":
        log_prob_key = next((k for k in _LOG_PROB_KEYS if td.get(k, None) is not None), None)
        if log_prob_key is None:
            raise KeyError(
                f"V-trace needs the behaviour log-probability: the TensorDict has none of "
                f"{list(_LOG_PROB_KEYS)}"
            )
        tensors["sample_log_prob"] = _td_step(td, log_prob_key, "sample_log_prob")
        tensors["action"] = td.get(_ACTION, None)
    observation: dict[str, Any] = {}
    next_observation: dict[str, Any] = {}
    if in_keys is not None:
        for key in in_keys:
            value = td.get(key, None)
            if value is None:
                raise KeyError(f"the TensorDict has no observation key {key!r}")
            observation[key] = value
            nxt = td.get(("next", key), None)
            if nxt is not None:
                next_observation[key] = nxt
            elif not send_values:
                raise KeyError(f"the TensorDict has no {('next', key)!r}")
    r = to_wire(reward, name="reward")
    build_estimator(request, estimator, knobs, r)
    _fill_trajectory(
        request.trajectory,
        reward=r,
        done=to_wire(done, name="done"),
        terminated=None if terminated is None else to_wire(terminated, name="terminated"),
        observation=observation,
        next_observation=next_observation,
        tensors=tensors,
        form=form,
    )
    return PreparedCall(request, OutputSpec("tensordict", device=reward.device, tensordict=td))


# --------------------------------------------------------------------------------------------
# Response
# --------------------------------------------------------------------------------------------


def decode_response(response: pb.ComputeAdvantageResponse, output: OutputSpec) -> Any:
    """Turn the response into what the caller passed in: numpy, torch, or a new TensorDict."""
    if output.kind == "numpy":

        def dec(name: str) -> Any:
            return decode_numpy(getattr(response, name), name=name)
    else:

        def dec(name: str) -> Any:
            return decode_torch(getattr(response, name), name=name, device=output.device)

    advantage = dec("advantage")
    value_target = dec("value_target")
    has_values = response.HasField("state_value") and response.HasField("next_state_value")
    state_value = dec("state_value") if has_values else None
    next_state_value = dec("next_state_value") if has_values else None
    if output.kind != "tensordict":
        return AdvantageResult(
            advantage=advantage,
            value_target=value_target,
            state_value=state_value,
            next_state_value=next_state_value,
            model_name=response.model_name,
            parameter_version=response.parameter_version,
            timing=Timing.from_pb(response.timing),
        )
    td = output.tensordict
    batch = tuple(td.batch_size)
    if tuple(advantage.shape) != batch:
        raise ValueError(
            f"advantage: the server returned shape {list(advantage.shape)}, expected {list(batch)}"
        )
    out = td.copy()  # new TensorDict (nested ones too) sharing the caller's tensors
    out.set("advantage", advantage.unsqueeze(-1))
    out.set("value_target", value_target.unsqueeze(-1))
    if state_value is not None:
        out.set(_VALUE, state_value.unsqueeze(-1))
        out.set(_NEXT_VALUE, next_state_value.unsqueeze(-1))
    return out
