"""Build a ComputeAdvantageRequest from keyword arrays or a TensorDict; decode the response.

Shared by the sync and the asyncio client: everything here is pure (no I/O), so the clients only
differ in how they send the request. The array helpers (names, TorchRL's [*B, T, 1] layout) serve
`_loss` too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from advantage_client._agents import group_arrays, write_group_outputs
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
from advantage_client.options import EstimatorLike, EstimatorOptions, VTrace, estimator_from
from advantage_client.types import AdvantageResult, Timing

__all__ = [
    "ADVANTAGE_ARRAYS",
    "TRAJECTORY_ARRAYS",
    "OutputSpec",
    "PreparedCall",
    "compact_observations",
    "decode_response",
    "fill_batch",
    "fill_from_arrays",
    "needs_input_keys",
    "prepare",
    "td_reward_and_done",
]

Form = Literal["auto", "full", "compact"]

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
_MASK = ("collector", "mask")  # TorchRL's valid-step mask of padded segments
# A composite policy's per-head arrays go to these Trajectory maps.
_HEAD_FIELDS = {
    "action": "action_heads",
    "sample_log_prob": "sample_log_prob_heads",
    "log_prob": "log_prob_heads",
}

#: The trajectory's keyword arrays, the same for both calls.
TRAJECTORY_ARRAYS = (
    "reward",
    "done",
    "terminated",
    "observation",
    "next_observation",
    "state_value",
    "next_state_value",
    "action",
    "sample_log_prob",
    "mask",
)
#: The batch's keyword arrays compute_advantage takes.
ADVANTAGE_ARRAYS = (*TRAJECTORY_ARRAYS, "log_prob")
# One value per step: [*B, T] in the contract, [*B, T, 1] in TorchRL's layout.
_PER_STEP = (
    "reward",
    "done",
    "terminated",
    "state_value",
    "next_state_value",
    "sample_log_prob",
    "log_prob",
    "advantage",
    "value_target",
)


# --------------------------------------------------------------------------------------------
# Keyword arrays
# --------------------------------------------------------------------------------------------


def batch_arrays(call: str, arrays: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    """The call's keyword arrays, every name present (None = not given); refuse unknown ones."""
    unknown = sorted(set(arrays) - set(names))
    if unknown:
        raise TypeError(
            f"{call}() got unexpected keyword arguments {unknown}; the batch's arrays are "
            f"{', '.join(names)} (knobs go in the estimator= / loss= option objects)"
        )
    return {name: arrays.get(name) for name in names}


def check_batch_source(data: Any, arrays: Mapping[str, Any]) -> None:
    """`data` (the positional batch) must be a TensorDict, and then no array may be given."""
    if not is_tensordict(data):
        raise TypeError(
            "the positional argument must be a TensorDict; pass arrays by keyword "
            f"(reward=..., done=...), got {type(data).__name__}"
        )
    given = sorted(k for k, v in arrays.items() if v is not None)
    if given:
        raise TypeError(f"pass either a TensorDict or arrays, not both (got {given})")


def _shape_of(x: Any) -> tuple[int, ...]:
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def _feature_dim_error(shape: tuple[int, ...], clue: str) -> ValueError:
    return ValueError(
        f"reward has shape {list(shape)}: its trailing dimension of size 1 looks like TorchRL's "
        f"feature dimension ({clue}, so [*B, T] is {list(shape[:-1])}). Pass torchrl_shapes=True "
        "to send TorchRL-shaped [*B, T, 1] per-step arrays (results then come back as "
        "[*B, T, 1]), or drop the 1 (reward[..., 0])."
    )


def _refuse_torchrl_reward(arrays: Mapping[str, Any], observation: Mapping[str, Any]) -> None:
    """Refuse a TorchRL-shaped [*B, T, 1] reward sent without torchrl_shapes=True.

    The contract would read it as [*B, T] with T = 1 (and then blame the observation). The 1 is
    taken for TorchRL's feature dimension when an observation or another per-step array shows
    that [*B, T] is the reward's shape without it; without such a clue it is sent as it is.
    """
    shape = _shape_of(arrays["reward"])
    if len(shape) < 2 or shape[-1] != 1:
        return
    steps = shape[:-1]
    for key, value in observation.items():
        obs = _shape_of(value)
        fits_steps = obs[: len(steps)] in (steps, (*steps[:-1], steps[-1] + 1))  # full, compact
        fits_shape = obs[: len(shape)] in (shape, (*steps, 2))
        if fits_steps and not fits_shape:
            raise _feature_dim_error(shape, f"observation[{key!r}] has shape {list(obs)}")
    for name in _PER_STEP:
        value = arrays.get(name)
        if name != "reward" and value is not None and _shape_of(value) == steps:
            raise _feature_dim_error(shape, f"{name} has shape {list(steps)}")


def _drop_feature_dims(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """torchrl_shapes=True: every per-step array is [*B, T, 1]; drop the 1."""
    out = dict(arrays)
    for name in _PER_STEP:
        value = arrays.get(name)
        if value is None:
            continue
        shape = _shape_of(value)
        if len(shape) < 2 or shape[-1] != 1:
            raise ValueError(
                f"{name}: torchrl_shapes=True expects TorchRL's [*B, T, 1], got shape {list(shape)}"
            )
        out[name] = value.squeeze(-1) if is_torch_tensor(value) else np.asarray(value)[..., 0]
    return out


def contract_layout(
    arrays: Mapping[str, Any], observation: Mapping[str, Any], torchrl_shapes: bool
) -> dict[str, Any]:
    """Per-step arrays in the contract's [*B, T] layout: TorchRL's [*B, T, 1] squeezed with
    torchrl_shapes=True; without it, a reward that is visibly TorchRL-shaped is refused."""
    if not isinstance(torchrl_shapes, (bool, np.bool_)):
        raise TypeError(f"torchrl_shapes must be a bool, got {type(torchrl_shapes).__name__}")
    if torchrl_shapes:
        return _drop_feature_dims(arrays)
    _refuse_torchrl_reward(arrays, observation)
    return dict(arrays)


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


def _broken_chain(obs: np.ndarray, nxt: np.ndarray, done: np.ndarray, nb: int) -> np.ndarray:
    """[*B, T − 1] bool: steps t not done where next_observation[t] != observation[t + 1]."""
    lead = (slice(None),) * (nb - 1)
    same = nxt[(*lead, slice(None, -1))] == obs[(*lead, slice(1, None))]
    same = same.reshape(*same.shape[:nb], math.prod(same.shape[nb:])).all(axis=-1)  # T = 1 too
    return ~same & ~done[(*lead, slice(None, -1))]


def _check_chained(obs: np.ndarray, nxt: np.ndarray, done: np.ndarray, nb: int, key: str) -> None:
    """The compact form drops next_observation[t] wherever step t is not done, so it must equal
    observation[t + 1] there; refuse instead of silently sending different data."""
    broken = _broken_chain(obs, nxt, done, nb)
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
    torchrl_shapes: bool = False  # per-step results get TorchRL's trailing 1 (arrays only)
    agent_group: str | None = None  # a MARL tensordict: results go to (group, name)


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


def fill_batch(
    request: pb.ComputeAdvantageRequest | pb.ComputeLossRequest,
    estimator: EstimatorOptions | None,
    *,
    reward: Any,
    done: Any,
    terminated: Any,
    observation: Mapping[str, Any],
    next_observation: Mapping[str, Any],
    tensors: Mapping[str, Any],
    form: str,
    n_agents: int = 0,
) -> None:
    """Encode the trajectory (per-step arrays [*B, T]) into `request`, building the compact form
    when asked, and the estimator (None = none; a per-step γ or λ needs the reward).

    `tensors` may hold a ``mask`` ([*B, T] bool, False at padding) and, for a composite policy,
    ``action`` / ``sample_log_prob`` / ``log_prob`` as mappings head → array (or a TensorDict of
    heads, whose nested keys are joined with dots). With `n_agents` the per-agent arrays are
    [*B, T, n_agents, ...] (full form only)."""
    if form not in ("auto", "full", "compact"):
        raise ValueError(f"form must be 'auto', 'full' or 'compact', got {form!r}")
    if isinstance(n_agents, bool) or not isinstance(n_agents, (int, np.integer)) or n_agents < 0:
        raise TypeError(f"n_agents must be an int >= 0, got {n_agents!r}")
    if n_agents and form == "compact":
        raise ValueError("form='compact' is not available with n_agents; send form='full'")
    reward = to_wire(reward, name="reward")
    done = to_wire(done, name="done")
    terminated = None if terminated is None else to_wire(terminated, name="terminated")
    if form == "auto":  # the agent layout has no compact form
        chained = not n_agents and _chains(observation, next_observation, done)
        form = "compact" if chained else "full"
    if estimator is not None:
        estimator.fill(request, reward)
    traj = request.trajectory
    traj.reward.CopyFrom(encode(reward, name="reward"))
    traj.done.CopyFrom(encode(done, name="done"))
    if terminated is not None:
        traj.terminated.CopyFrom(encode(terminated, name="terminated"))
    traj.n_agents = int(n_agents)
    for name, value in tensors.items():
        if value is None:
            continue
        if name in _HEAD_FIELDS and (is_tensordict(value) or isinstance(value, Mapping)):
            for key, head in head_arrays(value).items():
                getattr(traj, _HEAD_FIELDS[name])[key].CopyFrom(
                    encode(head, name=f"{name}[{key!r}]")
                )
        else:
            getattr(traj, name).CopyFrom(encode(value, name=name))
    mask = tensors.get("mask")
    if mask is not None and form == "compact":  # padding: done, terminated, never truncated
        valid = to_wire(mask, name="mask").array.astype(bool)
        done = WireArray(done.array.astype(bool) | ~valid, done.dtype)
        ends = done.array if terminated is None else terminated.array.astype(bool) | ~valid
        terminated = WireArray(ends, done.dtype)
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


def head_arrays(value: Any) -> dict[str, Any]:
    """A composite policy's per-head arrays: a mapping head → array, or a TensorDict whose
    nested keys become dotted head names (("agents", "action0") → "agents.action0")."""
    if is_tensordict(value):
        return {
            ".".join(key) if isinstance(key, tuple) else key: leaf
            for key, leaf in value.items(include_nested=True, leaves_only=True)
        }
    return dict(value)


def _chains(
    observation: Mapping[str, Any], next_observation: Mapping[str, Any], done: WireArray
) -> bool:
    """Whether form='auto' may send the compact form: full-form observations, each with its
    next observations, chained (next_observation[t] == observation[t + 1] wherever step t is
    not done). The numbers are the same either way; the compact form is about half the bytes."""
    nb = len(done.shape)
    if not observation or nb == 0 or set(next_observation) != set(observation):
        return False
    flags = np.asarray(done.array, dtype=bool)
    for key, value in observation.items():
        obs = to_wire(value, name=f"observation[{key!r}]")
        nxt = to_wire(next_observation[key], name=f"next_observation[{key!r}]")
        if obs.shape[:nb] != done.shape or nxt.shape != obs.shape or nxt.dtype != obs.dtype:
            return False
        if _broken_chain(obs.array, nxt.array, flags, nb).any():
            return False
    return True


def needs_input_keys(
    data: Any,
    estimator: EstimatorLike | None,
    in_keys: Sequence[str] | None,
    recompute_values: bool,
) -> bool:
    """Whether a TensorDict call must first learn the model's input keys (GetModel)."""
    if in_keys is not None or not is_tensordict(data):
        return False
    has_values = data.get(_VALUE, None) is not None and data.get(_NEXT_VALUE, None) is not None
    return _is_vtrace(estimator) or recompute_values or not has_values


def _is_vtrace(estimator: EstimatorLike | None) -> bool:
    return estimator is not None and isinstance(estimator_from(estimator), VTrace)


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


def td_mask(td: Any) -> Any:
    """TorchRL's ("collector", "mask") [*B, T] (or [*B, T, 1]), None when absent."""
    return _td_step(td, _MASK, "mask")


def td_reward_and_done(td: Any) -> tuple[Any, Any]:
    """A TensorDict's ("next", "reward") and ("next", "done"), [*B, T]; both are needed."""
    if td.batch_dims < 1:
        raise ValueError("the TensorDict needs batch_size [*B, T] (time last), got []")
    reward = _td_step(td, _REWARD, "reward")
    done = _td_step(td, _DONE, "done")
    if reward is None or done is None:
        missing = [str(k) for k, v in ((_REWARD, reward), (_DONE, done)) if v is None]
        raise KeyError(f"the TensorDict has no {' and '.join(missing)}")
    return reward, done


def prepare(
    data: Any = None,
    *,
    estimator: EstimatorLike | None = "gae",
    model: str = "",
    form: str = "auto",
    in_keys: Sequence[str] | None = None,
    recompute_values: bool = False,
    torchrl_shapes: bool = False,
    n_agents: int = 0,
    agent_group: str | None = None,
    observation_dtype: str | None = None,
    **arrays: Any,
) -> PreparedCall:
    """Validate the arguments of compute_advantage and build the request (see the clients).

    `estimator` is anything `estimator_from` takes; None leaves the oneof unset (the server's GAE
    with the model's γ, λ). `observation_dtype` ("float16" or "bfloat16") rounds float32/float64
    observations to it for the wire (`narrow_observations`).
    """
    options = None if estimator is None else estimator_from(estimator)
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, got {type(model).__name__}")
    if observation_dtype not in (None, *_NARROW):
        raise ValueError(
            f"observation_dtype must be None, 'float16' or 'bfloat16', got {observation_dtype!r}"
        )
    given = batch_arrays("compute_advantage", arrays, ADVANTAGE_ARRAYS)
    request = pb.ComputeAdvantageRequest(model_name=model)
    if data is not None:
        check_batch_source(data, given)
        if n_agents:
            raise TypeError("n_agents applies to keyword arrays; a TensorDict names agent_group")
        if agent_group is not None:
            prepared = _prepare_agent_tensordict(
                request, data, agent_group, options, form, in_keys, recompute_values
            )
        else:
            prepared = _prepare_tensordict(request, data, options, form, in_keys, recompute_values)
        if observation_dtype is not None:
            narrow_observations(prepared.request, observation_dtype)
        return prepared
    if recompute_values:
        given["state_value"] = given["next_state_value"] = None
    missing = [k for k in ("reward", "done") if given[k] is None]
    if missing:
        raise TypeError(f"compute_advantage() needs {' and '.join(missing)}")
    if (given["state_value"] is None) != (given["next_state_value"] is None):
        raise ValueError("pass both state_value and next_state_value, or neither")
    reward = given["reward"]
    output = (
        OutputSpec("torch", device=reward.device, torchrl_shapes=torchrl_shapes)
        if is_torch_tensor(reward)
        else OutputSpec("numpy", torchrl_shapes=torchrl_shapes)
    )
    fill_from_arrays(request, given, options, in_keys, form, torchrl_shapes, n_agents)
    if observation_dtype is not None:
        narrow_observations(request, observation_dtype)
    return PreparedCall(request, output)


_NARROW = {"float16": pb.DTYPE_FLOAT16, "bfloat16": pb.DTYPE_BFLOAT16}


def _to_bfloat16_bits(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (int16), rounded to nearest, ties to even, as torch's
    ``.to(torch.bfloat16)`` rounds; NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + (0x7FFF + ((bits >> 16) & 1))) >> 16
    rounded = np.where(np.isnan(x), (bits >> 16) | 0x40, rounded)  # keep NaN a (quiet) NaN
    return rounded.astype(np.uint16).view("<i2")


def narrow_observations(request: pb.ComputeAdvantageRequest, dtype: str) -> None:
    """Reduced-precision transfer: every float32/float64 observation and next observation of
    `request` is rounded to `dtype` ("float16" or "bfloat16") and the request says so
    (`reduced_precision_observations`); the server widens them back to the model's dtype and
    computes in it. Halves (float32) or quarters (float64) the observation bytes; the relative
    rounding error per element is at most 2^-11 (float16, |x| in [6.1e-5, 65504]; values beyond
    65504 become inf and are refused by the server) or 2^-8 (bfloat16)."""
    wire = _NARROW[dtype]
    traj = request.trajectory
    for observations in (traj.observation, traj.next_observation):
        for key in list(observations):
            message = observations[key]
            if message.dtype not in (pb.DTYPE_FLOAT32, pb.DTYPE_FLOAT64):
                continue
            array = decode_numpy(message, name=f"observation[{key!r}]")
            if wire == pb.DTYPE_FLOAT16:
                with np.errstate(over="ignore"):  # beyond 65504: inf, which the server refuses
                    narrow = WireArray(np.ascontiguousarray(array, dtype="<f2"), wire)
            else:
                narrow = WireArray(_to_bfloat16_bits(array.astype(np.float32)), wire)
            observations[key].CopyFrom(encode(narrow, name=f"observation[{key!r}]"))
    request.reduced_precision_observations = True


def fill_from_arrays(
    request: pb.ComputeAdvantageRequest | pb.ComputeLossRequest,
    given: Mapping[str, Any],
    estimator: EstimatorOptions | None,
    in_keys: Sequence[str] | None,
    form: str,
    torchrl_shapes: bool,
    n_agents: int = 0,
) -> dict[str, Any]:
    """Write the keyword arrays' trajectory into `request`, and the estimator (a per-step γ or
    λ needs the reward); returns the arrays in the contract's [*B, T] layout (with `n_agents`:
    [*B, T, n_agents], as given)."""
    observation = given["observation"]
    if in_keys is not None and len(in_keys) != 1 and not isinstance(observation, Mapping):
        raise ValueError("in_keys names the single observation key for array inputs")
    default_key = in_keys[0] if in_keys else _DEFAULT_OBS_KEY
    observations = _as_obs_map(observation, default_key)
    if n_agents and torchrl_shapes:
        raise ValueError("torchrl_shapes=True does not apply with n_agents ([*B, T, n_agents])")
    if not n_agents:
        given = contract_layout(given, observations, torchrl_shapes)
    fill_batch(
        request,
        estimator,
        reward=given["reward"],
        done=given["done"],
        terminated=given["terminated"],
        observation=observations,
        next_observation=_as_obs_map(given["next_observation"], default_key),
        tensors={
            name: given.get(name)
            for name in (
                "state_value", "next_state_value", "action", "sample_log_prob", "log_prob", "mask",
            )
        },
        form=form,
        n_agents=n_agents,
    )  # fmt: skip
    return given


def _prepare_agent_tensordict(
    request: pb.ComputeAdvantageRequest,
    td: Any,
    group: str,
    estimator: EstimatorOptions | None,
    form: str,
    in_keys: Sequence[str] | None,
    recompute_values: bool,
) -> PreparedCall:
    """A MARL tensordict (`_agents`): its group's arrays, sent with n_agents."""
    arrays, n_agents = group_arrays(
        td, group, in_keys or (), for_loss=False, send_values=not recompute_values
    )
    if not isinstance(estimator, VTrace):
        arrays.pop("action", None)
        arrays.pop("sample_log_prob", None)
    given = {name: arrays.get(name) for name in ADVANTAGE_ARRAYS}
    fill_from_arrays(request, given, estimator, None, form, False, n_agents)
    reward = given["reward"]
    output = OutputSpec("tensordict", device=reward.device, tensordict=td, agent_group=group)
    return PreparedCall(request, output)


def _prepare_tensordict(
    request: pb.ComputeAdvantageRequest,
    td: Any,
    estimator: EstimatorOptions | None,
    form: str,
    in_keys: Sequence[str] | None,
    recompute_values: bool,
) -> PreparedCall:
    reward, done = td_reward_and_done(td)
    terminated = _td_step(td, _TERMINATED, "terminated")
    tensors: dict[str, Any] = {}
    value = _td_step(td, _VALUE, "state_value")
    next_value = _td_step(td, _NEXT_VALUE, "next state_value")
    send_values = not recompute_values and value is not None and next_value is not None
    if send_values:
        tensors["state_value"] = value
        tensors["next_state_value"] = next_value
    if isinstance(estimator, VTrace):
        log_prob_key = next((k for k in _LOG_PROB_KEYS if td.get(k, None) is not None), None)
        if log_prob_key is None:
            raise KeyError(
                f"V-trace needs the behaviour log-probability: the TensorDict has none of "
                f"{list(_LOG_PROB_KEYS)}"
            )
        tensors["sample_log_prob"] = _td_step(td, log_prob_key, "sample_log_prob")
        tensors["action"] = td.get(_ACTION, None)
    tensors["mask"] = td_mask(td)
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
    fill_batch(
        request,
        estimator,
        reward=reward,
        done=done,
        terminated=terminated,
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
            array = decode_numpy(getattr(response, name), name=name)
            return array[..., None] if output.torchrl_shapes else array
    else:

        def dec(name: str) -> Any:
            tensor = decode_torch(getattr(response, name), name=name, device=output.device)
            return tensor.unsqueeze(-1) if output.torchrl_shapes else tensor

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
    if output.agent_group is not None:
        outputs = {"advantage": advantage, "value_target": value_target}
        if state_value is not None:
            outputs |= {"state_value": state_value, "next_state_value": next_state_value}
        return write_group_outputs(td, output.agent_group, outputs)
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
