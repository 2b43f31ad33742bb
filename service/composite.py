"""A policy over several named action heads: TorchRL's ``CompositeDistribution``, pure torch.

An action is a mapping ``{head name: action}``; the heads are independent given the state, so

    log π(a) = Σ_h log π_h(a_h),        H[π] = Σ_h H[π_h]

with each head's ``log π_h`` and ``H[π_h]`` those of its own distribution (categorical, normal,
tanh-normal: :mod:`service.distributions`, which scores and samples a composite through this
container). The sums run in the heads' declared order, as TorchRL's run over its
``distribution_map``.

``aggregate`` records TorchRL's ``composite_lp_aggregate`` mode: ``True`` reports the total
entropy only; ``False`` (non-aggregate, log-probabilities kept per head) also reports each head's
entropy as ``composite_entropy.<head>_entropy``, the name TorchRL's PPO losses give it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import distributions as D

from service.errors import ArgumentError

__all__ = ["CompositeDistribution", "entropy_metric_name"]


def entropy_metric_name(head: str) -> str:
    """TorchRL's metric name for a head's entropy (``composite_entropy.<head>_entropy``)."""
    return f"composite_entropy.{head}_entropy"


class CompositeDistribution(D.Distribution):
    """Independent named heads sharing one batch shape ``[*B]``.

    Build the heads with :func:`service.distributions.make_distribution`; score and sample them
    with :mod:`service.distributions` (``log_prob``, ``entropy``, ``kl_divergence``), which
    accept this container wherever they accept a single distribution.
    """

    has_rsample = False

    def __init__(self, heads: Mapping[str, D.Distribution], *, aggregate: bool = True) -> None:
        if not heads:
            raise ArgumentError("heads", "expected at least one head")
        shapes = {name: tuple(dist.batch_shape) for name, dist in heads.items()}
        if len(set(shapes.values())) != 1:
            raise ArgumentError("heads", f"expected one batch shape for every head, got {shapes}")
        self.heads: dict[str, D.Distribution] = dict(heads)
        self.aggregate = aggregate
        batch_shape = next(iter(self.heads.values())).batch_shape
        super().__init__(batch_shape, torch.Size(), validate_args=False)

    @property
    def names(self) -> tuple[str, ...]:
        """Head names in their declared order."""
        return tuple(self.heads)
