"""Build a ComputeLossRequest from keyword arrays or a TensorDict; decode the response.

Pure (no I/O), shared by the sync and the asyncio client. The loss and the estimator are option
objects (`advantage_client.options`), so the estimator's γ/λ and IMPALA's never clash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from advantage_client._agents import group_arrays
from advantage_client._codec import encode, is_tensordict
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client._request import (
    _ACTION,
    _LOG_PROB_KEYS,
    _NEXT_VALUE,
    _TERMINATED,
    _VALUE,
    TRAJECTORY_ARRAYS,
    _td_step,
    batch_arrays,
    check_batch_source,
    fill_batch,
    fill_from_arrays,
    head_arrays,
    td_mask,
    td_reward_and_done,
)
from advantage_client.options import (
    EstimatorLike,
    EstimatorOptions,
    LossLike,
    LossOptions,
    estimator_from,
    loss_from,
)
from advantage_client.types import LossResult, Timing

__all__ = [
    "LOSS_ARRAYS",
    "PreparedLoss",
    "behaviour_keys",
    "decode_loss_response",
    "needs_model_info",
    "prepare_loss",
]

#: The batch's keyword arrays compute_loss takes.
LOSS_ARRAYS = (*TRAJECTORY_ARRAYS, "advantage", "value_target", "behaviour_distribution")
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


# --------------------------------------------------------------------------------------------
# Request
# --------------------------------------------------------------------------------------------


@dataclass
class PreparedLoss:
    """A ComputeLossRequest ready to send."""

    request: pb.ComputeLossRequest


def needs_model_info(
    data: Any, loss: LossLike, in_keys: Sequence[str] | None, behaviour_distribution: Any
) -> bool:
    """Whether a TensorDict call must first describe the model (input keys, action spec)."""
    if not is_tensordict(data):
        return False
    wants_behaviour = (
        loss_from(loss).needs_behaviour_distribution and behaviour_distribution is None
    )
    return in_keys is None or wants_behaviour


def _check_estimator(
    loss: LossOptions,
    estimator: EstimatorOptions | None,
    sends_advantage: bool,
    where: str,
) -> None:
    """Refuse an estimator that would not run."""
    if estimator is None:
        return
    if loss.computes_own_targets:
        raise TypeError(
            f"{loss.oneof_field} computes its own targets: it takes no estimator (its knobs "
            f"say how, e.g. Impala(gamma=..., lmbda=..., rho_thresh=..., ...))"
        )
    if sends_advantage:
        raise TypeError(
            f"{where} advantage and value_target, so the estimator would not run: drop estimator"
            + (" or pass recompute_advantage=True" if where == "the TensorDict carries" else "")
        )


def _check_behaviour(loss: LossOptions, behaviour_distribution: Any) -> None:
    if behaviour_distribution is None:
        return
    if not loss.needs_behaviour_distribution:
        raise TypeError(f"behaviour_distribution is used by ppo_kl only, not {loss.oneof_field!r}")
    if not isinstance(behaviour_distribution, Mapping) or is_tensordict(behaviour_distribution):
        raise TypeError(
            "behaviour_distribution must be a {key: array} mapping, got "
            f"{type(behaviour_distribution).__name__}"
        )
    if not behaviour_distribution:
        raise ValueError("behaviour_distribution is empty")


def prepare_loss(
    data: Any = None,
    *,
    loss: LossLike = "ppo_clip",
    estimator: EstimatorLike | None = None,
    apply_update: bool = False,
    expected_parameter_version: int | None = None,
    model: str = "",
    form: str = "full",
    in_keys: Sequence[str] | None = None,
    distribution: str | None = None,
    recompute_advantage: bool = False,
    torchrl_shapes: bool = False,
    n_agents: int = 0,
    composite_lp_aggregate: bool | None = None,
    agent_group: str | None = None,
    **arrays: Any,
) -> PreparedLoss:
    """Validate the arguments of compute_loss and build the request (see the clients).

    `loss` and `estimator` are anything `loss_from` / `estimator_from` take (estimator None:
    the server's GAE with the model's γ, λ). `distribution` is the model's action distribution
    (needed only to read ppo_kl's behaviour parameters from a TensorDict).
    """
    loss_options = loss_from(loss)
    estimator_options = None if estimator is None else estimator_from(estimator)
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
    given = batch_arrays("compute_loss", arrays, LOSS_ARRAYS)
    behaviour_distribution = given.pop("behaviour_distribution")
    _check_behaviour(loss_options, behaviour_distribution)
    request = pb.ComputeLossRequest(model_name=model, apply_update=bool(apply_update))
    if expected_parameter_version is not None:
        request.expected_parameter_version = int(expected_parameter_version)
    loss_options.fill(request)
    if composite_lp_aggregate is not None:
        if not isinstance(composite_lp_aggregate, (bool, np.bool_)):
            raise TypeError(
                "composite_lp_aggregate must be a bool or None, got "
                f"{type(composite_lp_aggregate).__name__}"
            )
        request.composite_lp_aggregate = bool(composite_lp_aggregate)
    if data is not None and agent_group is not None:  # a MARL tensordict → its group's arrays
        check_batch_source(data, given)
        if n_agents:
            raise TypeError("n_agents applies to keyword arrays; a TensorDict names agent_group")
        if in_keys is None:
            raise ValueError("in_keys: the observation keys of the agent group are needed")
        group, n_agents = group_arrays(data, agent_group, in_keys, for_loss=True)
        if recompute_advantage or loss_options.computes_own_targets:
            group.pop("advantage", None)
            group.pop("value_target", None)
        given = {name: group.get(name) for name in given}
        data, in_keys, recompute_advantage = None, None, False
    if data is not None:
        check_batch_source(data, given)
        if n_agents:
            raise TypeError("n_agents applies to keyword arrays; a TensorDict names agent_group")
        _fill_from_tensordict(
            request,
            data,
            loss=loss_options,
            estimator=estimator_options,
            form=form,
            in_keys=in_keys,
            distribution=distribution,
            recompute_advantage=recompute_advantage,
            behaviour_distribution=behaviour_distribution,
        )
        return PreparedLoss(request)
    if recompute_advantage:
        raise TypeError("recompute_advantage applies to TensorDict inputs only")
    missing = [k for k in ("reward", "done", "action") if given[k] is None]
    if missing:
        raise TypeError(f"compute_loss() needs {' and '.join(missing)}")
    if (given["state_value"] is None) != (given["next_state_value"] is None):
        raise ValueError("pass both state_value and next_state_value, or neither")
    advantage = given["advantage"]
    if (advantage is None) != (given["value_target"] is None):
        raise ValueError("pass both advantage and value_target, or neither")
    name = loss_options.oneof_field
    if loss_options.computes_own_targets and advantage is not None:
        raise TypeError(f"{name} computes its own targets: it takes no advantage")
    if loss_options.needs_sample_log_prob and given["sample_log_prob"] is None:
        raise TypeError(f"{name} needs sample_log_prob (the behaviour policy's log-probability)")
    if loss_options.needs_behaviour_distribution and behaviour_distribution is None:
        raise TypeError('ppo_kl needs behaviour_distribution={"logits": ...} (or loc, scale)')
    _check_estimator(loss_options, estimator_options, advantage is not None, "with")
    given = fill_from_arrays(
        request, given, estimator_options, in_keys, form, torchrl_shapes, n_agents
    )
    if advantage is not None:
        request.advantage.CopyFrom(encode(given["advantage"], name="advantage"))
        request.value_target.CopyFrom(encode(given["value_target"], name="value_target"))
    for key, value in (behaviour_distribution or {}).items():
        request.behaviour_distribution[key].CopyFrom(
            encode(value, name=f"behaviour_distribution[{key!r}]")
        )
    return PreparedLoss(request)


def _fill_from_tensordict(
    request: pb.ComputeLossRequest,
    td: Any,
    *,
    loss: LossOptions,
    estimator: EstimatorOptions | None,
    form: str,
    in_keys: Sequence[str] | None,
    distribution: str | None,
    recompute_advantage: bool,
    behaviour_distribution: Mapping[str, Any] | None,
) -> None:
    if in_keys is None:
        raise ValueError("in_keys: the observation keys to read from the TensorDict are needed")
    reward, done = td_reward_and_done(td)
    tensors: dict[str, Any] = {}
    action = td.get(_ACTION, None)
    if action is None:
        raise KeyError(f"the TensorDict has no {_ACTION!r} (the actions the loss scores)")
    tensors["mask"] = td_mask(td)
    log_prob_key = next((k for k in _LOG_PROB_KEYS if td.get(k, None) is not None), None)
    per_head: dict[str, Any] = {}
    if is_tensordict(action):  # a composite policy: TorchRL's nested heads under "action"
        heads = {f"{_ACTION}.{k}": v for k, v in head_arrays(action).items()}
        logs = {k for k in heads if k.endswith("_log_prob")}  # non-aggregate: move_log_prob
        tensors["action"] = {k: v for k, v in heads.items() if k not in logs}
        per_head = {k.removesuffix("_log_prob"): heads[k] for k in logs}
    else:
        tensors["action"] = action
    if log_prob_key is not None:
        tensors["sample_log_prob"] = _td_step(td, log_prob_key, "sample_log_prob")
    elif per_head:
        tensors["sample_log_prob"] = per_head
    elif loss.needs_sample_log_prob:
        raise KeyError(
            f"{loss.oneof_field} needs the behaviour log-probability: the TensorDict has none of "
            f"{list(_LOG_PROB_KEYS)}"
        )
    value = _td_step(td, _VALUE, "state_value")
    next_value = _td_step(td, _NEXT_VALUE, "next state_value")
    if value is not None and next_value is not None:  # the old values of clip_value
        tensors["state_value"], tensors["next_state_value"] = value, next_value
    adv = _td_step(td, "advantage", "advantage")
    target = _td_step(td, "value_target", "value_target")
    sends_advantage = not loss.computes_own_targets and not recompute_advantage and adv is not None
    if sends_advantage and target is None:
        raise KeyError(
            "the TensorDict has 'advantage' but no 'value_target' (the critic's target); "
            "add it or pass recompute_advantage=True"
        )
    _check_estimator(loss, estimator, sends_advantage, "the TensorDict carries")
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
    if loss.needs_behaviour_distribution and params is None:
        keys = behaviour_keys(distribution)
        absent = [k for k in keys if td.get(k, None) is None]
        if absent:
            raise KeyError(
                f"ppo_kl needs the behaviour policy's {list(keys)}: the TensorDict has no "
                f"{absent} (or pass behaviour_distribution=...)"
            )
        params = {k: td.get(k) for k in keys}
    fill_batch(
        request,
        estimator,
        reward=reward,
        done=done,
        terminated=_td_step(td, _TERMINATED, "terminated"),
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
