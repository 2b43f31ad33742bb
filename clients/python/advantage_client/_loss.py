"""Build a ComputeLossRequest from keyword arguments or a TensorDict; decode the response.

Pure (no I/O), shared by the sync and the asyncio client. Loss knobs are keyword arguments of
`compute_loss`; the estimator's knobs travel in ``estimator_options`` so that the estimator's γ/λ
and IMPALA's γ/λ never clash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from google.protobuf.descriptor import FieldDescriptor

from advantage_client._codec import encode, is_tensordict, to_wire
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client._request import (
    _ACTION,
    _DEFAULT_OBS_KEY,
    _DONE,
    _LOG_PROB_KEYS,
    _NEXT_VALUE,
    _REWARD,
    _TERMINATED,
    _VALUE,
    _as_obs_map,
    _fill_trajectory,
    _td_step,
    build_estimator,
    check_knobs,
)
from advantage_client.types import LossResult, Timing

__all__ = [
    "LOSSES",
    "LOSS_KNOBS",
    "Loss",
    "PreparedLoss",
    "behaviour_keys",
    "check_loss_knobs",
    "decode_loss_response",
    "needs_model_info",
    "prepare_loss",
]

Loss = Literal["ppo_clip", "ppo_kl", "ppo", "a2c", "reinforce", "impala"]

_LOSS_FIELDS = {f.name: f for f in pb.ComputeLossRequest.DESCRIPTOR.oneofs_by_name["loss"].fields}
_OPTION_FIELDS = pb.PolicyLossOptions.DESCRIPTOR.fields_by_name
# Shared PolicyLossOptions a loss ignores (the proto's A2CLoss / ReinforceLoss comments); sending
# them would be silently dropped by the server, so the client refuses them.
_UNUSED_OPTIONS = {
    "a2c": {"normalize_advantage"},
    "reinforce": {"entropy_bonus", "entropy_coeff", "critic_coeff", "normalize_advantage"},
}
# ClipPPOLoss's (clip_epsilon_low, clip_epsilon_high) are one keyword: clip_epsilon=(low, high).
_FOLDED = {"clip_epsilon_low", "clip_epsilon_high"}


def _loss_knobs(name: str) -> frozenset[str]:
    fields = _LOSS_FIELDS[name].message_type.fields
    own = {f.name for f in fields if f.name != "options" and f.name not in _FOLDED}
    if any(f.name == "options" for f in fields):
        own |= set(_OPTION_FIELDS) - _UNUSED_OPTIONS.get(name, set())
    return frozenset(own)


#: Knobs each loss accepts (keyword arguments of compute_loss), read from the contract: the
#: fields of the loss's message in ComputeLossRequest.loss, its PolicyLossOptions included.
LOSS_KNOBS: dict[str, frozenset[str]] = {name: _loss_knobs(name) for name in _LOSS_FIELDS}
LOSSES: tuple[str, ...] = tuple(LOSS_KNOBS)
_ALL_LOSS_KNOBS = frozenset().union(*LOSS_KNOBS.values())

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
_NEEDS_SAMPLE_LOG_PROB = ("ppo_clip", "ppo_kl", "ppo", "impala")
# Actor output keys of each action distribution (TorchRL's dist param keys).
_DIST_PARAMS = {
    "categorical": ("logits",),
    "normal": ("loc", "scale"),
    "tanh_normal": ("loc", "scale"),
}


def behaviour_keys(distribution: str | None) -> tuple[str, ...]:
    """The behaviour_distribution keys ppo_kl needs for an actor's distribution."""
    if distribution not in _DIST_PARAMS:
        raise ValueError(f"ppo_kl needs a model with an actor network, got {distribution!r}")
    return _DIST_PARAMS[distribution]


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
    if loss not in LOSS_KNOBS:
        raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")
    allowed = LOSS_KNOBS[loss]
    for knob, value in knobs.items():
        if knob not in _ALL_LOSS_KNOBS:
            raise TypeError(f"unknown loss knob {knob!r}")
        if value is None:
            continue
        if knob not in allowed:
            hint = (
                " (estimator knobs go in estimator_options={...})"
                if knob in ("gamma", "lmbda", "rho_thresh", "c_thresh", "rho_pg_thresh")
                else ""
            )
            raise TypeError(
                f"loss {loss!r} takes no {knob!r}{hint} (it takes: {', '.join(sorted(allowed))})"
            )
        _check_value(loss, knob, value)


def _build_loss(request: pb.ComputeLossRequest, loss: str, knobs: Mapping[str, Any]) -> None:
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


# --------------------------------------------------------------------------------------------
# Request
# --------------------------------------------------------------------------------------------


@dataclass
class PreparedLoss:
    """A ComputeLossRequest ready to send."""

    request: pb.ComputeLossRequest


def needs_model_info(
    data: Any, loss: str, in_keys: Sequence[str] | None, behaviour_distribution: Any
) -> bool:
    """Whether a TensorDict call must first describe the model (input keys, action spec)."""
    if not is_tensordict(data):
        return False
    return in_keys is None or (loss == "ppo_kl" and behaviour_distribution is None)


def _check_estimator(
    loss: str,
    estimator: str | None,
    estimator_options: Mapping[str, Any] | None,
    sends_advantage: bool,
    where: str,
) -> str | None:
    """The estimator to put in the request (None = leave the oneof unset)."""
    if estimator_options is not None and not isinstance(estimator_options, Mapping):
        raise TypeError(
            f"estimator_options must be a mapping, got {type(estimator_options).__name__}"
        )
    options = dict(estimator_options or {})
    explicit = estimator is not None or bool(options)
    if loss == "impala" and explicit:
        raise TypeError(
            "impala computes its own V-trace targets: it takes no estimator / "
            "estimator_options (pass gamma=, lmbda=, rho_thresh=, ... directly)"
        )
    if sends_advantage and explicit:
        raise TypeError(
            f"{where} advantage and value_target, so the estimator would not run: drop "
            "estimator / estimator_options"
            + (" or pass recompute_advantage=True" if where == "the TensorDict carries" else "")
        )
    name = estimator if estimator is not None else ("gae" if options else None)
    if name is not None:
        check_knobs(name, options)
    return name


def prepare_loss(
    data: Any = None,
    *,
    model: str = "",
    loss: str = "ppo_clip",
    knobs: Mapping[str, Any],
    estimator: str | None = None,
    estimator_options: Mapping[str, Any] | None = None,
    apply_update: bool = False,
    expected_parameter_version: int | None = None,
    form: str = "full",
    in_keys: Sequence[str] | None = None,
    distribution: str | None = None,
    recompute_advantage: bool = False,
    behaviour_distribution: Mapping[str, Any] | None = None,
    reward: Any = None,
    done: Any = None,
    terminated: Any = None,
    observation: Any = None,
    next_observation: Any = None,
    state_value: Any = None,
    next_state_value: Any = None,
    action: Any = None,
    sample_log_prob: Any = None,
    advantage: Any = None,
    value_target: Any = None,
) -> PreparedLoss:
    """Validate the arguments of compute_loss and build the request (see the clients).

    `distribution` is the model's action distribution (needed only to read ppo_kl's behaviour
    parameters from a TensorDict).
    """
    check_loss_knobs(loss, knobs)
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, got {type(model).__name__}")
    if not isinstance(apply_update, (bool, np.bool_)):
        raise TypeError(f"apply_update must be a bool, got {type(apply_update).__name__}")
    version = expected_parameter_version
    if version is not None and (
        not isinstance(version, (int, np.integer)) or isinstance(version, (bool, np.bool_))
    ):
        raise TypeError(
            "expected_parameter_version must be an int, got "
            f"{type(expected_parameter_version).__name__}"
        )
    if behaviour_distribution is not None:
        if loss != "ppo_kl":
            raise TypeError(f"behaviour_distribution is used by ppo_kl only, not {loss!r}")
        if not isinstance(behaviour_distribution, Mapping) or is_tensordict(behaviour_distribution):
            raise TypeError(
                "behaviour_distribution must be a {key: array} mapping, got "
                f"{type(behaviour_distribution).__name__}"
            )
        if not behaviour_distribution:
            raise ValueError("behaviour_distribution is empty")
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
        "advantage": advantage,
        "value_target": value_target,
    }
    request = pb.ComputeLossRequest(model_name=model, apply_update=bool(apply_update))
    if expected_parameter_version is not None:
        request.expected_parameter_version = int(expected_parameter_version)
    _build_loss(request, loss, knobs)
    if data is not None:
        if not is_tensordict(data):
            raise TypeError(
                "the positional argument must be a TensorDict; pass arrays by keyword "
                f"(reward=..., done=...), got {type(data).__name__}"
            )
        given = sorted(k for k, v in arrays.items() if v is not None)
        if given:
            raise TypeError(f"pass either a TensorDict or arrays, not both (got {given})")
        _fill_from_tensordict(
            request,
            data,
            loss=loss,
            estimator=estimator,
            estimator_options=estimator_options,
            form=form,
            in_keys=in_keys,
            distribution=distribution,
            recompute_advantage=recompute_advantage,
            behaviour_distribution=behaviour_distribution,
        )
        return PreparedLoss(request)
    if recompute_advantage:
        raise TypeError("recompute_advantage applies to TensorDict inputs only")
    missing = [k for k in ("reward", "done", "action") if arrays[k] is None]
    if missing:
        raise TypeError(f"compute_loss() needs {' and '.join(missing)}")
    if (state_value is None) != (next_state_value is None):
        raise ValueError("pass both state_value and next_state_value, or neither")
    if (advantage is None) != (value_target is None):
        raise ValueError("pass both advantage and value_target, or neither")
    if loss == "impala" and advantage is not None:
        raise TypeError("impala computes its own V-trace targets: it takes no advantage")
    if loss in _NEEDS_SAMPLE_LOG_PROB and sample_log_prob is None:
        raise TypeError(f"{loss} needs sample_log_prob (the behaviour policy's log-probability)")
    if loss == "ppo_kl" and behaviour_distribution is None:
        raise TypeError('ppo_kl needs behaviour_distribution={"logits": ...} (or loc, scale)')
    if in_keys is not None and len(in_keys) != 1 and not isinstance(observation, Mapping):
        raise ValueError("in_keys names the single observation key for array inputs")
    name = _check_estimator(loss, estimator, estimator_options, advantage is not None, "with")
    r = to_wire(reward, name="reward")
    if name is not None:
        build_estimator(request, name, dict(estimator_options or {}), r)
    default_key = in_keys[0] if in_keys else _DEFAULT_OBS_KEY
    _fill_trajectory(
        request.trajectory,
        reward=r,
        done=to_wire(done, name="done"),
        terminated=None if terminated is None else to_wire(terminated, name="terminated"),
        observation=_as_obs_map(observation, default_key),
        next_observation=_as_obs_map(next_observation, default_key),
        tensors={
            "state_value": state_value,
            "next_state_value": next_state_value,
            "action": action,
            "sample_log_prob": sample_log_prob,
        },
        form=form,
    )
    if advantage is not None:
        request.advantage.CopyFrom(encode(advantage, name="advantage"))
        request.value_target.CopyFrom(encode(value_target, name="value_target"))
    for key, value in (behaviour_distribution or {}).items():
        request.behaviour_distribution[key].CopyFrom(
            encode(value, name=f"behaviour_distribution[{key!r}]")
        )
    return PreparedLoss(request)


def _fill_from_tensordict(
    request: pb.ComputeLossRequest,
    td: Any,
    *,
    loss: str,
    estimator: str | None,
    estimator_options: Mapping[str, Any] | None,
    form: str,
    in_keys: Sequence[str] | None,
    distribution: str | None,
    recompute_advantage: bool,
    behaviour_distribution: Mapping[str, Any] | None,
) -> None:
    if td.batch_dims < 1:
        raise ValueError("the TensorDict needs batch_size [*B, T] (time last), got []")
    if in_keys is None:
        raise ValueError("in_keys: the observation keys to read from the TensorDict are needed")
    reward = _td_step(td, _REWARD, "reward")
    done = _td_step(td, _DONE, "done")
    if reward is None or done is None:
        missing = [str(k) for k, v in ((_REWARD, reward), (_DONE, done)) if v is None]
        raise KeyError(f"the TensorDict has no {' and '.join(missing)}")
    tensors: dict[str, Any] = {}
    action = td.get(_ACTION, None)
    if action is None:
        raise KeyError(f"the TensorDict has no {_ACTION!r} (the actions the loss scores)")
    tensors["action"] = action
    log_prob_key = next((k for k in _LOG_PROB_KEYS if td.get(k, None) is not None), None)
    if log_prob_key is not None:
        tensors["sample_log_prob"] = _td_step(td, log_prob_key, "sample_log_prob")
    elif loss in _NEEDS_SAMPLE_LOG_PROB:
        raise KeyError(
            f"{loss} needs the behaviour log-probability: the TensorDict has none of "
            f"{list(_LOG_PROB_KEYS)}"
        )
    value = _td_step(td, _VALUE, "state_value")
    next_value = _td_step(td, _NEXT_VALUE, "next state_value")
    if value is not None and next_value is not None:  # the old values of clip_value
        tensors["state_value"], tensors["next_state_value"] = value, next_value
    adv = _td_step(td, "advantage", "advantage")
    target = _td_step(td, "value_target", "value_target")
    sends_advantage = loss != "impala" and not recompute_advantage and adv is not None
    if sends_advantage and target is None:
        raise KeyError(
            "the TensorDict has 'advantage' but no 'value_target' (the critic's target); "
            "add it or pass recompute_advantage=True"
        )
    name = _check_estimator(
        loss, estimator, estimator_options, sends_advantage, "the TensorDict carries"
    )
    observation: dict[str, Any] = {}
    next_observation: dict[str, Any] = {}
    for key in in_keys:
        obs = td.get(key, None)
        nxt = td.get(("next", key), None)
        if obs is None or nxt is None:
            absent = key if obs is None else ("next", key)
            raise KeyError(f"the TensorDict has no observation key {absent!r}")
        observation[key], next_observation[key] = obs, nxt
    params = behaviour_distribution
    if loss == "ppo_kl" and params is None:
        keys = behaviour_keys(distribution)
        absent = [k for k in keys if td.get(k, None) is None]
        if absent:
            raise KeyError(
                f"ppo_kl needs the behaviour policy's {list(keys)}: the TensorDict has no "
                f"{absent} (or pass behaviour_distribution=...)"
            )
        params = {k: td.get(k) for k in keys}
    r = to_wire(reward, name="reward")
    if name is not None:
        build_estimator(request, name, dict(estimator_options or {}), r)
    _fill_trajectory(
        request.trajectory,
        reward=r,
        done=to_wire(done, name="done"),
        terminated=(
            None
            if (term := _td_step(td, _TERMINATED, "terminated")) is None
            else to_wire(term, name="terminated")
        ),
        observation=observation,
        next_observation=next_observation,
        tensors=tensors,
        form=form,
    )
    if sends_advantage:
        request.advantage.CopyFrom(encode(adv, name="advantage"))
        request.value_target.CopyFrom(encode(target, name="value_target"))
    for key, value in (params or {}).items():
        request.behaviour_distribution[key].CopyFrom(
            encode(value, name=f"behaviour_distribution[{key!r}]")
        )


# --------------------------------------------------------------------------------------------
# Response
# --------------------------------------------------------------------------------------------


def decode_loss_response(response: pb.ComputeLossResponse) -> LossResult:
    """The response as a `LossResult` (plain floats and ints)."""
    return LossResult(
        loss=response.loss,
        metrics=dict(sorted(response.metrics.items())),
        model_name=response.model_name,
        parameter_version=response.parameter_version,
        new_parameter_version=response.new_parameter_version,
        updated=response.updated,
        grad_norm=response.grad_norm,
        timing=Timing.from_pb(response.timing),
    )
