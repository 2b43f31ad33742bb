"""Whole-tensor standardisation, as TorchRL's estimator classes apply it.

``average_gae`` (GAE, eps 1e-4), ``average_adv`` (VTrace, eps 1e-5) and ``average_rewards``
(TD0Estimator and TD1Estimator eps 1e-5, TDLambdaEstimator eps 1e-4) all compute
``(x - x.mean()) / x.std().clamp_min(eps)`` over every element: one mean and one unbiased
standard deviation for the whole batch, not per trajectory.
"""

from __future__ import annotations

from torch import Tensor

from service.errors import ArgumentError

__all__ = ["EPS_ADV_VTRACE", "EPS_GAE", "EPS_REWARDS_TD", "EPS_REWARDS_TD_LAMBDA", "standardize"]

EPS_GAE = 1e-4
EPS_ADV_VTRACE = 1e-5
EPS_REWARDS_TD = 1e-5  # TD0Estimator, TD1Estimator
EPS_REWARDS_TD_LAMBDA = 1e-4  # TDLambdaEstimator


def standardize(x: Tensor, eps: float, name: str) -> Tensor:
    """``(x - mean) / max(std, eps)`` over all elements, with the unbiased std.

    Raises:
        ValueError: with fewer than two elements, where the unbiased std is NaN (TorchRL would
            silently return NaN everywhere).
    """
    if x.numel() < 2:
        raise ArgumentError(
            name, f"expected at least 2 elements to standardise, got shape {tuple(x.shape)}"
        )
    return (x - x.mean()) / x.std().clamp_min(eps)
