"""DreamerV3's return normalisation: an EMA of the 5th and 95th return percentiles.

Hafner et al. 2023 (arXiv 2301.04104), eq. 8 and §"Robust predictions":

    S = EMA(Per(R^λ, 95) − Per(R^λ, 5), 0.99),    actor objective uses R^λ / max(1, S)

The EMA is kept for each percentile (as TorchRL 0.14.1's `PercentileValueNorm` does): with
rate α = 1 − decay = 0.01,

    low ← low + α (Per(R, 5) − low),    high ← high + α (Per(R, 95) − high),
    scale = max(min_scale, high − low),  min_scale = 1

so small returns are not scaled up (the divisor never drops below 1). Both EMAs start at 0.
Percentiles are torch.quantile's (linear interpolation) over every element of the batch.
The state (low, high) belongs to the model; this module only computes the next state.
"""

from __future__ import annotations

import torch

QUANTILES = (0.05, 0.95)


def updated_return_range(
    low: torch.Tensor,
    high: torch.Tensor,
    returns: torch.Tensor,
    rate: float = 0.01,
    quantiles: tuple[float, float] = QUANTILES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) after one EMA step towards the batch's percentiles of `returns` (any
    shape; detached)."""
    flat = returns.detach().reshape(-1).to(low.dtype)
    points = torch.tensor(quantiles, dtype=flat.dtype, device=flat.device)
    batch_low, batch_high = torch.quantile(flat, points)
    return torch.lerp(low, batch_low, rate), torch.lerp(high, batch_high, rate)


def return_scale(low: torch.Tensor, high: torch.Tensor, min_scale: float = 1.0) -> torch.Tensor:
    """max(min_scale, high − low): the divisor of the actor's returns or advantages."""
    return (high - low).clamp_min(min_scale)
