"""`PerAgentNetworks`: one network per agent behind the per-agent contract.

A model with `"agent_networks": "per_agent"` gets every agent of a step together, inputs
[N, n_agents, *shape], and answers [N, n_agents, ...] (`service.models.manifest`). This module
holds n networks of the shared contract ([N, *shape] → [N, ...]) and applies agent i's network to
agent i's inputs: TorchRL's `MultiAgentMLP(share_params=False, centralised=False)`, for any
network. It exports with `torch.export` (a symbolic N) and TorchScript.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class PerAgentNetworks(nn.Module):
    """Agent i's output from agent i's network: [N, n, *shape] inputs → [N, n, ...] outputs of
    the same structure as each network's (a tensor, a tuple, or a mapping such as a composite
    actor's head → parameters)."""

    def __init__(self, networks: list[nn.Module] | nn.ModuleList) -> None:
        super().__init__()
        if not len(networks):
            raise ValueError("networks: expected one network per agent, got none")
        self.agents = nn.ModuleList(networks)

    def forward(self, *inputs: torch.Tensor):
        outputs = [
            network(*(x.select(1, i) for x in inputs)) for i, network in enumerate(self.agents)
        ]
        return _stacked(outputs)


def _stacked(parts: list):
    """The agents' outputs stacked at dim 1, keeping their structure."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(parts, dim=1)
    if isinstance(first, Mapping):
        return {key: _stacked([part[key] for part in parts]) for key in first}
    return tuple(_stacked(list(group)) for group in zip(*parts, strict=True))
