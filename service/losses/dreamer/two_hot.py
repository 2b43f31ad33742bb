"""Two-hot encoding of scalars on DreamerV3's symexp-spaced support (255 bins by default).

Hafner et al. 2023 (arXiv 2301.04104), §"Robust predictions": a reward or value head outputs
logits over bins b_1 < … < b_K; a scalar target y is spread over the two bins around it,

    k = max{j : b_j ≤ y},   twohot(y)_k = |b_{k+1} − y| / |b_{k+1} − b_k|,
    twohot(y)_{k+1} = |b_k − y| / |b_{k+1} − b_k|,

and the loss is the cross-entropy −Σ_j twohot(y)_j log softmax(logits)_j. The prediction is
the expectation Σ_j softmax(logits)_j b_j.

The support is TorchRL 0.14.1's (`_default_bins`): b = symexp(linspace(−20, 20, K)), and the
interpolation happens in raw value space between those points (the paper's reference code
interpolates in symlog space; TorchRL's choice is kept here so the numbers match it). Targets
outside the support saturate at its ends.
"""

from __future__ import annotations

import torch

from service.errors import ArgumentError
from service.losses.dreamer.symlog import symexp

DEFAULT_BINS = 255
BIN_RANGE = 20.0  # the support spans symexp(±20)


def default_bins(
    num_bins: int = DEFAULT_BINS,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The support [num_bins]: symexp of an even grid over [−20, 20], symmetric about 0.

    The negative half is built and mirrored, so b_{K+1−j} = −b_j exactly (an odd count puts 0
    in the middle)."""
    if num_bins < 2:
        raise ArgumentError("num_bins", f"expected at least 2, got {num_bins}")
    dtype = dtype or torch.get_default_dtype()
    half_count = num_bins // 2
    if num_bins % 2:
        half = symexp(torch.linspace(-BIN_RANGE, 0.0, half_count + 1, dtype=dtype, device=device))
        return torch.cat((half, -half[:-1].flip(0)))
    step = 2 * BIN_RANGE / (num_bins - 1)
    grid = -BIN_RANGE + step * torch.arange(half_count, dtype=dtype, device=device)
    half = symexp(grid)
    return torch.cat((half, -half.flip(0)))


def two_hot_encode(target: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """twohot(y) [*target.shape, K] (see the module docstring); rows sum to 1."""
    bins = bins.to(device=target.device, dtype=target.dtype)
    y = target.clamp(bins[0], bins[-1])
    lower = ((y.unsqueeze(-1) >= bins).sum(-1) - 1).clamp(0, bins.numel() - 2)
    upper = lower + 1
    upper_weight = (y - bins[lower]) / (bins[upper] - bins[lower])
    encoded = torch.zeros((*y.shape, bins.numel()), dtype=y.dtype, device=y.device)
    encoded.scatter_(-1, lower.unsqueeze(-1), (1 - upper_weight).unsqueeze(-1))
    encoded.scatter_(-1, upper.unsqueeze(-1), upper_weight.unsqueeze(-1))
    return encoded


def two_hot_decode(logits: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Σ_j p_j b_j [*logits.shape[:-1]], p = softmax(logits): the head's scalar prediction.

    Summed over mirrored pairs (j, K−1−j): Σ_k (p⁺_k − p⁻_k) b⁺_k + p⁻_k (b⁺_k + b⁻_k), plus the
    middle bin when K is odd. The same sum, but on the symmetric support (b⁻_k = −b⁺_k) the
    second term is exactly 0, so the ±symexp(20) ≈ ±4.9e8 ends cancel before they are added:
    uniform logits (a zero-initialised head) decode to exactly 0, not to a float32 rounding
    error of order 0.1."""
    count = bins.numel()
    if logits.shape[-1] != count:
        raise ArgumentError(
            "logits", f"expected {count} bins in the last dimension, got {logits.shape[-1]}"
        )
    bins = bins.to(device=logits.device, dtype=logits.dtype)
    probs = torch.softmax(logits, dim=-1)
    half = count // 2
    upper, upper_bins = probs[..., count - half :], bins[count - half :]
    lower, lower_bins = probs[..., :half].flip(-1), bins[:half].flip(0)
    value = ((upper - lower) * upper_bins + lower * (upper_bins + lower_bins)).sum(-1)
    if count % 2:
        value = value + probs[..., half] * bins[half]
    return value


def two_hot_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, bins: torch.Tensor
) -> torch.Tensor:
    """−Σ_j twohot(y)_j log softmax(logits)_j, unreduced [*target.shape]; `target` may carry a
    trailing singleton dimension."""
    if target.shape == (*logits.shape[:-1], 1):
        target = target.squeeze(-1)
    if target.shape != logits.shape[:-1] or logits.shape[-1] != bins.numel():
        raise ArgumentError(
            "target",
            f"expected logits [*S, {bins.numel()}] and target [*S]; got logits "
            f"{list(logits.shape)} and target {list(target.shape)}",
        )
    return -(two_hot_encode(target, bins) * torch.log_softmax(logits, dim=-1)).sum(-1)
