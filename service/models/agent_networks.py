"""`PerAgentNetworks`: one network per agent behind the per-agent contract.

A model with `"agent_networks": "per_agent"` gets every agent of a step together, inputs
[N, n_agents, *shape], and answers [N, n_agents, ...] (`service.models.manifest`). This module
holds n networks of the shared contract ([N, *shape] → [N, ...]) and applies agent i's network to
agent i's inputs: TorchRL's `MultiAgentMLP(share_params=False, centralised=False)`, for any
network. It exports with `torch.export` (a symbolic N) and TorchScript.
"""

from __future__ import annotations

import torch
from torch import nn


class PerAgentNetworks(nn.Module):
    """Agent i's output from agent i's network: [N, n, *shape] inputs → [N, n, ...] output
    (value or single-head actor networks: a tensor or a tuple of tensors per agent)."""

    def __init__(self, networks: list[nn.Module] | nn.ModuleList) -> None:
        super().__init__()
        if not len(networks):
            raise ValueError("networks: expected one network per agent, got none")
        self.agents = nn.ModuleList(networks)

    def forward(self, *inputs: torch.Tensor):
        outputs = [
            network(*(x.select(1, i) for x in inputs)) for i, network in enumerate(self.agents)
        ]
        if isinstance(outputs[0], torch.Tensor):
            return torch.stack(outputs, dim=1)
        return tuple(torch.stack(parts, dim=1) for parts in zip(*outputs, strict=True))
