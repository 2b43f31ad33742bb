"""A Q-network ensemble as one module: E members, one call, outputs stacked to [N, E, K]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class QValueEnsemble(nn.Module):
    """E Q-networks of the same signature evaluated together.

    Each member maps the inputs ([N, *shape] each; for state-action networks the action last) to
    [N, K] (K = 1 for Q(s, a), K = num_actions for an action-value head); the ensemble returns
    [N, E, K]. Members' parameters are named `members.<i>.<name>`.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("members: an ensemble needs at least one network")
        self.members = nn.ModuleList(members)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        outputs = [member(*inputs) for member in self.members]
        return torch.stack([out.reshape(out.shape[0], -1) for out in outputs], dim=1)
