"""The multi-agent wire layout ↔ the agent-major layout the runtime computes in.

On the wire (TorchRL's MARL convention, time before agents) a request with `n_agents = n > 0`
carries per-agent step tensors as `[*B, T, n]`, observations as `[*B, T, n, *obs]` (compact
form `[*B, T + 1, n, *obs]`), actions as `[*B, T, n, *action]`, done/terminated as `[*B, T]`
(shared) or `[*B, T, n]`, and the mask as `[*B, T]`.

The runtime sees agents as one more batch dimension before time, `[*B, n, T, ...]`: every
estimator, network pass and loss then works unchanged, each agent's sequence is its own
recursion (advantages per agent), and a loss's mean over `[*B, n, T]` is TorchRL's mean over
`[*B, T, n]` (its MAPPO/IPPO set-up reduces every element alike). Shared flags are expanded to
each agent. `to_wire` turns `[*B, n, T]` outputs back into `[*B, T, n]`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from service.errors import InvalidArgument


def _shape(shape: tuple[int, ...] | torch.Size) -> str:
    return str(list(shape))


@dataclass(frozen=True)
class AgentLayout:
    """How the request's tensors are laid out: `n` agents (0 = none) over steps `[*B, T]`."""

    n: int
    batch: tuple[int, ...] = ()
    horizon: int = 0

    @classmethod
    def of(cls, n_agents: int, reward: torch.Tensor) -> AgentLayout:
        """The layout of a request whose reward (wire shape) is `reward`."""
        if not n_agents:
            return cls(0)
        if reward.dim() < 2 or reward.shape[-1] != n_agents:
            raise InvalidArgument(
                f"trajectory.reward: expected shape [*B, T, n_agents] with n_agents = "
                f"{n_agents}, got {_shape(reward.shape)}"
            )
        return cls(n_agents, tuple(reward.shape[:-2]), int(reward.shape[-2]))

    @property
    def wire_steps(self) -> tuple[int, ...]:
        """[*B, T]."""
        return (*self.batch, self.horizon)

    def values(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        """A per-agent step tensor [*B, T, n] → [*B, n, T]."""
        if not self.n:
            return tensor
        expected = (*self.wire_steps, self.n)
        if tuple(tensor.shape) != expected:
            raise InvalidArgument(
                f"{name}: expected shape {_shape(expected)} ([*B, T, n_agents], the reward's), "
                f"got {_shape(tensor.shape)}"
            )
        return tensor.movedim(-1, -2).contiguous()

    def flags(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        """A flag shared by the agents [*B, T] or per agent [*B, T, n] → [*B, n, T]."""
        if not self.n:
            return tensor
        if tuple(tensor.shape) == self.wire_steps:
            steps = (*self.batch, self.n, self.horizon)
            return tensor.unsqueeze(-2).expand(steps).contiguous()
        if tuple(tensor.shape) == (*self.wire_steps, self.n):
            return tensor.movedim(-1, -2).contiguous()
        raise InvalidArgument(
            f"{name}: expected shape {_shape(self.wire_steps)} (shared by the agents) or "
            f"{_shape((*self.wire_steps, self.n))} (per agent), got {_shape(tensor.shape)}"
        )

    def mask(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        """The mask [*B, T] → [*B, n, T] (padding is per step, shared by the agents)."""
        if not self.n:
            return tensor
        if tuple(tensor.shape) != self.wire_steps:
            raise InvalidArgument(
                f"{name}: expected shape {_shape(self.wire_steps)} ([*B, T], shared by the "
                f"agents), got {_shape(tensor.shape)}"
            )
        return tensor.unsqueeze(-2).expand(*self.batch, self.n, self.horizon).contiguous()

    def leading(self, tensor: torch.Tensor, name: str, extra_steps: int = 0) -> torch.Tensor:
        """Observations or actions [*B, T (+ extra_steps), n, *tail] → [*B, n, T, *tail]."""
        if not self.n:
            return tensor
        time = len(self.batch)
        steps = self.horizon + extra_steps
        if (
            tensor.dim() < time + 2
            or tuple(tensor.shape[:time]) != self.batch
            or tensor.shape[time] != steps
            or tensor.shape[time + 1] != self.n
        ):
            wanted = [*self.batch, steps, self.n]
            raise InvalidArgument(
                f"{name}: expected shape {wanted} + the per-agent shape ([*B, T"
                f"{' + 1' if extra_steps else ''}, n_agents, ...]), got {_shape(tensor.shape)}"
            )
        return tensor.movedim(time + 1, time).contiguous()

    def compact_next(
        self, tensor: torch.Tensor, name: str, truncated: torch.Tensor
    ) -> torch.Tensor:
        """Compact form's true next observations [K, n, *obs] (K truncated steps of the shared
        done, in [*B, T] order) → [K·n, *obs] in the agent-major order of the truncations."""
        if not self.n:
            return tensor
        count = int(truncated.sum())
        if tensor.dim() < 2 or tensor.shape[0] != count or tensor.shape[1] != self.n:
            raise InvalidArgument(
                f"{name}: expected shape [{count}, {self.n}, ...] (compact form: the K = "
                f"{count} truncated steps, then the agents), got {_shape(tensor.shape)}"
            )
        index = torch.full(self.wire_steps, -1, dtype=torch.long)
        index[truncated] = torch.arange(count)
        steps = (*self.batch, self.n, self.horizon)
        index = index.unsqueeze(-2).expand(steps)
        agent = torch.arange(self.n).view(self.n, 1).expand(steps)
        selected = truncated.unsqueeze(-2).expand(steps)
        return tensor[index[selected], agent[selected]]

    def to_wire(self, tensor: torch.Tensor) -> torch.Tensor:
        """An output [*B, n, T] → [*B, T, n]."""
        if not self.n:
            return tensor
        return tensor.movedim(-1, -2).contiguous()
