"""Per-agent networks (manifest `agent_networks: "per_agent"`) on the agent-major runtime layout.

The runtime holds a request with agents agent-major, `[*B, n, T, ...]` (`wire/agents.py`), and
gives shared networks rows `[N, *shape]`, N = prod(B)·n·T. A per-agent network takes the agents
of one step together, `[M, n, *shape]` with M = prod(B)·T steps, and answers `[M, n, ...]`:
TorchRL's `MultiAgentMLP(share_params=False)` (agent i's output from agent i's parameters) or a
centralised critic (`centralised=True`, MAPPO: every agent's output from all observations).
`to_grid` and `from_grid` convert between rows and that grid; the errors name the network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from service.errors import FailedPrecondition


def to_grid(tensor: torch.Tensor, steps: tuple[int, ...]) -> torch.Tensor:
    """[*steps, *tail] with steps = [*B, n, T] → [M, n, *tail], M = prod(B)·T."""
    tail = tensor.shape[len(steps) :]
    grid = tensor.movedim(len(steps) - 2, len(steps) - 1)
    return grid.reshape(-1, steps[-2], *tail)


def rows_to_grid(rows: torch.Tensor, steps: tuple[int, ...]) -> torch.Tensor:
    """Rows [prod(steps), *tail] in the agent-major order → [M, n, *tail]."""
    return to_grid(rows.reshape(*steps, *rows.shape[1:]), steps)


def from_grid(output: torch.Tensor, steps: tuple[int, ...], what: str) -> torch.Tensor:
    """A per-agent network's output [M, n, *tail] → rows [prod(steps), *tail] in the runtime's
    agent-major order; an output without the agent dimension is FAILED_PRECONDITION."""
    agents, horizon, batch = steps[-2], steps[-1], steps[:-2]
    rows = math.prod(batch) * horizon
    if output.dim() < 2 or output.shape[0] != rows or output.shape[1] != agents:
        raise FailedPrecondition(
            f"{what}: expected shape [{rows}, {agents}, ...] ([N, n_agents, ...]: a per_agent "
            f"network keeps the agent dimension), got {list(output.shape)}"
        )
    tail = output.shape[2:]
    grid = output.reshape(*batch, horizon, agents, *tail).movedim(len(batch) + 1, len(batch))
    return grid.reshape(math.prod(steps), *tail)


def outputs_from_grid(outputs: object, steps: tuple[int, ...], what: str) -> object:
    """`from_grid` over an actor's outputs: a tensor, a tuple of them or a (nested) mapping."""
    if isinstance(outputs, torch.Tensor):
        return from_grid(outputs, steps, what)
    if isinstance(outputs, Mapping):
        return {key: outputs_from_grid(value, steps, f"{what}[{key!r}]")
                for key, value in outputs.items()}  # fmt: skip
    if isinstance(outputs, (tuple, list)):
        return tuple(outputs_from_grid(value, steps, what) for value in outputs)
    raise FailedPrecondition(f"{what}: expected tensors, got {type(outputs).__name__}")


def value_grid(output: torch.Tensor, rows: int, agents: int, what: str) -> torch.Tensor:
    """A per-agent value network's output [R, n, 1] (or [R, n]) → [R, n]."""
    if output.dim() == 3 and output.shape[-1] == 1:
        output = output.squeeze(-1)
    if tuple(output.shape) != (rows, agents):
        raise FailedPrecondition(
            f"{what}: expected shape [{rows}, {agents}, 1] ([N, n_agents, 1]: a per_agent "
            f"value network keeps the agent dimension), got {list(output.shape)}"
        )
    return output


def compact_grid_index(
    truncated: torch.Tensor, agents_dim: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The compact form's true next observations arrive as rows in the agent-major order of
    `truncated` [*B, n, T] (the same steps for every agent: done is shared): for each such row,
    its step k (in [*B, T] order) and agent a, so that grid[k, a] = rows[i]."""
    step_truncated = truncated.select(agents_dim, 0)
    index = torch.full(step_truncated.shape, -1, dtype=torch.long)
    index[step_truncated] = torch.arange(int(step_truncated.sum()))
    index = index.unsqueeze(agents_dim).expand(truncated.shape)
    agents = truncated.shape[agents_dim]
    view = [1] * truncated.dim()
    view[agents_dim] = agents
    agent = torch.arange(agents).view(view).expand(truncated.shape)
    return index[truncated], agent[truncated]
