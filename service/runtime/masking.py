"""Padded batches: a `mask` [*B, T] (TorchRL's `("collector", "mask")`) marks the valid steps.

Masked steps must contribute nothing, so the estimator kernels and the networks never see the
padding as data. Around the unchanged kernels:

* `sanitized` replaces the padding by neutral values: reward 0, values 0, log-probabilities 0,
  actions 0, observations 0, and marks every padded step done and terminated. A terminated step
  bootstraps from nothing and a done step cuts the recursion, so nothing flows from the padding
  into a valid step.
* `estimator_flags` additionally ends the segment at every valid step followed by padding:
  ``done'_t = done_t ∨ (m_t ∧ ¬m_{t+1})`` (``m_T = False``). ``terminated`` is left as it is, so a
  non-terminal last valid step bootstraps from its own next observation, γ·V(s'_t), exactly as
  the last step of the unpadded segment does, never from padding.
* `masked_estimate` runs the estimator with those flags and zeroes the padded outputs. An
  estimator's whole-batch standardisation (``average_gae``, ``average_adv``,
  ``average_rewards``) is taken over the valid steps only.

Hence: the outputs at valid steps equal the estimator run on each unpadded segment on its own,
and the losses (`runtime/loss.py`) take their means over the valid steps only.
"""

from __future__ import annotations

import dataclasses

import torch

from service.errors import ArgumentError, InvalidArgument
from service.estimators.standardize import (
    EPS_ADV_VTRACE,
    EPS_GAE,
    EPS_REWARDS_TD,
    EPS_REWARDS_TD_LAMBDA,
    standardize,
)
from service.runtime.estimation import EstimatorSpec, run_estimator
from service.runtime.trajectory import Trajectory

# Standardisation knobs of the estimators: knob → (what it standardises, eps per estimator).
_REWARD_STANDARDISATION = {"td0": EPS_REWARDS_TD, "td1": EPS_REWARDS_TD}
_REWARD_STANDARDISATION["td_lambda"] = EPS_REWARDS_TD_LAMBDA
_ADVANTAGE_STANDARDISATION = {
    "gae": ("average_gae", EPS_GAE),
    "vtrace": ("average_adv", EPS_ADV_VTRACE),
}


def _zero_where(valid: torch.Tensor, tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` [*steps, *tail] with its padded steps set to 0 (select, not multiply: NaN
    padding stays out)."""
    if tuple(tensor.shape[: valid.dim()]) != tuple(valid.shape):
        return tensor  # not laid out per step: left for the shape checks downstream to refuse
    shape = (*valid.shape, *(1,) * (tensor.dim() - valid.dim()))
    return torch.where(valid.view(shape), tensor, torch.zeros((), dtype=tensor.dtype))


def _compact_used(valid: torch.Tensor) -> torch.Tensor:
    """[*B, T + 1]: the compact form's observations a valid step uses (its own, or as the next
    observation of the step before)."""
    pad = torch.zeros((*valid.shape[:-1], 1), dtype=torch.bool)
    return torch.cat([valid, pad], -1) | torch.cat([pad, valid], -1)


def sanitized(trajectory: Trajectory) -> Trajectory:
    """The trajectory with its padding replaced by neutral values (see the module docstring).

    The compact form's true next observations ([K]) are those of the truncated *valid* steps.
    """
    valid = trajectory.mask
    if valid is None:
        return trajectory
    padded = ~valid
    changes: dict[str, object] = {
        "reward": _zero_where(valid, trajectory.reward),
        "done": trajectory.done | padded,
        "terminated": trajectory.terminated | padded,
    }
    for name in ("state_value", "next_state_value", "sample_log_prob", "log_prob", "action"):
        tensor = getattr(trajectory, name)
        if tensor is not None:
            changes[name] = _zero_where(valid, tensor)
    if trajectory.action_heads is not None:
        changes["action_heads"] = {
            key: _zero_where(valid, head) for key, head in trajectory.action_heads.items()
        }
    observed = _compact_used(valid) if trajectory.compact else valid
    changes["observation"] = {
        key: _zero_where(observed, x) for key, x in trajectory.observation.items()
    }
    if not trajectory.compact:
        changes["next_observation"] = {
            key: _zero_where(valid, x) for key, x in trajectory.next_observation.items()
        }
    return dataclasses.replace(trajectory, **changes)  # type: ignore[arg-type]


def zero_padding(trajectory: Trajectory, tensor: torch.Tensor) -> torch.Tensor:
    """An output [*B, T] with 0 at the padded steps (unchanged without a mask)."""
    return tensor if trajectory.mask is None else _zero_where(trajectory.mask, tensor)


def estimator_flags(trajectory: Trajectory) -> torch.Tensor:
    """`done` for the estimator: a valid step followed by padding ends its segment."""
    valid = trajectory.mask
    if valid is None:
        return trajectory.done
    following = torch.cat([valid[..., 1:], torch.zeros_like(valid[..., :1])], -1)
    return trajectory.done | ~valid | (valid & ~following)


def masked_estimate(
    spec: EstimatorSpec,
    trajectory: Trajectory,
    *,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    log_pi: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantage, value_target) [*B, T] of a sanitized trajectory, 0 at padded steps."""
    valid = trajectory.mask
    if valid is None:
        return run_estimator(
            spec,
            state_value=state_value,
            next_state_value=next_state_value,
            reward=trajectory.reward,
            done=trajectory.done,
            terminated=trajectory.terminated,
            log_pi=log_pi,
            log_mu=trajectory.sample_log_prob,
        )
    options = dict(spec.options)
    reward = trajectory.reward
    if options.pop("average_rewards", False):
        eps = _REWARD_STANDARDISATION[spec.name]
        reward = _zero_where(valid, _standardize_valid(reward, valid, eps, "average_rewards"))
    knob, eps = _ADVANTAGE_STANDARDISATION.get(spec.name, (None, 0.0))
    average = bool(options.pop(knob, False)) if knob else False
    advantage, value_target = run_estimator(
        EstimatorSpec(spec.name, options),
        state_value=_zero_where(valid, state_value),
        next_state_value=_zero_where(valid, next_state_value),
        reward=reward,
        done=estimator_flags(trajectory),
        terminated=trajectory.terminated,
        log_pi=None if log_pi is None else _zero_where(valid, log_pi),
        log_mu=trajectory.sample_log_prob,
    )
    if average:
        assert knob is not None
        advantage = _standardize_valid(advantage, valid, eps, knob)
    return _zero_where(valid, advantage), _zero_where(valid, value_target)


def _standardize_valid(
    tensor: torch.Tensor, valid: torch.Tensor, eps: float, name: str
) -> torch.Tensor:
    """`tensor` standardised with the mean and unbiased std of its valid steps."""
    try:
        standardized = standardize(tensor[valid], eps, name)
    except ArgumentError as error:
        raise InvalidArgument.from_argument(error, f"{name} (over the valid steps)") from error
    return tensor.masked_scatter(valid, standardized)


def sequence_weights(trajectory: Trajectory) -> dict[str, torch.Tensor]:
    """A "sequence"-layout loss's options on a masked batch: `weight` [*B, T, 1] = N/N_valid at
    valid steps and 0 at padding, so a mean over all N steps is the mean over the valid ones;
    `valid` [*B, T, 1] for the metrics that are not means of weighted terms."""
    assert trajectory.mask is not None
    valid = trajectory.mask.unsqueeze(-1)
    scale = valid.numel() / int(valid.sum())
    weight = torch.where(valid, torch.tensor(scale, dtype=trajectory.dtype), 0)
    return {"weight": weight.to(trajectory.dtype), "valid": valid}
