"""A loaded model: its manifest, its networks on a device, and its parameter version."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from service.dtypes import TORCH_DTYPES
from service.models.manifest import Manifest

_DIRECT_FORWARD = "_service_direct_forward"


def call_network(network: nn.Module, inputs: list[torch.Tensor]) -> Any:
    """`network(*inputs)`, without the per-call argument-structure check after the first call.

    A `torch.export` program loaded with `.module()` runs two forward pre-hooks on every call:
    one re-checks that the arguments' pytree structure matches the exported signature (about
    40–100 µs, a third of a small value-network call on this CPU), the other is a no-op for
    tensor inputs. The structure a model is called with never changes (one positional tensor
    per manifest input), so once a call has passed the hooks the generated `forward` is called
    directly. The shape guards stay: that `forward` calls the program's `_guards_fn` itself.
    Other modules (TorchScript, eager) are called as they are.
    """
    direct = network.__dict__.get(_DIRECT_FORWARD)
    if direct is not None:
        return direct(*inputs)
    out = network(*inputs)
    if isinstance(network, torch.fx.GraphModule) and hasattr(network, "_guards_fn"):
        network.__dict__[_DIRECT_FORWARD] = network.forward
    return out


@dataclass
class Model:
    """Networks of one model on one device.

    `lock` serialises parameter updates against evaluations, so a request sees one consistent
    parameter version; `parameter_version` increases by one on each update (on a replica it is
    the learner's version of the copy it holds). Every change goes through `commit_version`,
    which tells the `version_listeners` (the server's WatchModels and read-your-writes waits).
    """

    manifest: Manifest
    device: torch.device
    value_network: nn.Module | None = None
    actor_network: nn.Module | None = None
    parameter_version: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # Training state for ComputeLoss updates: the optimizer (created on first update) and
    # per-model loss state such as KL-PEN's adaptive β.
    optimizer: torch.optim.Optimizer | None = field(default=None, repr=False)
    loss_state: dict[str, float] = field(default_factory=dict, repr=False)
    # DreamerV3: the world model (`service.models.world_model.WorldModel`) and the learner's
    # state between updates (`DreamerTrainingState`), when the manifest has a world model.
    world_model: Any = None
    dreamer: Any = field(default=None, repr=False)
    # Off-policy (`service.models.targets`): the Q-network ensemble, the target copies, and an
    # `OffPolicyState` (log_alpha, counters); the temperature's own optimizer.
    qvalue_network: nn.Module | None = None
    target_qvalue_network: nn.Module | None = field(default=None, repr=False)
    target_actor_network: nn.Module | None = field(default=None, repr=False)
    offpolicy: nn.Module | None = field(default=None, repr=False)
    alpha_optimizer: torch.optim.Optimizer | None = field(default=None, repr=False)
    # Called with the model after each version change, under its lock (so: cheap, no blocking).
    version_listeners: list[Callable[[Model], None]] = field(default_factory=list, repr=False)

    def commit_version(self, version: int | None = None) -> int:
        """Set the parameter version (default: one more) and tell the listeners; the caller
        holds `lock` and has just changed the parameters. Returns the new version."""
        self.parameter_version = self.parameter_version + 1 if version is None else version
        for listener in tuple(self.version_listeners):
            listener(self)
        return self.parameter_version

    @property
    def name(self) -> str:
        """The model's unique name."""
        return self.manifest.name

    @property
    def parameter_dtype(self) -> torch.dtype:
        """dtype of the first floating parameter (float32 when the networks have none)."""
        for network in (self.value_network, self.actor_network, self.qvalue_network):
            if network is None:
                continue
            for parameter in network.parameters():
                if parameter.is_floating_point():
                    return parameter.dtype
        return torch.float32

    @property
    def per_agent(self) -> bool:
        """Whether the value and actor networks take the agents of a step together,
        [N, agents, *shape] (manifest `agent_networks: "per_agent"`)."""
        return self.manifest.agent_networks == "per_agent"

    def input_dtype(self, key: str) -> torch.dtype:
        """dtype the networks expect for input `key`."""
        spec = next(spec for spec in self.manifest.inputs if spec.name == key)
        return TORCH_DTYPES[spec.dtype]

    def warmup(self) -> None:
        """Run each network once on a small zero batch (first calls pay one-off set-up costs)."""
        agents = (self.manifest.agents,) if self.per_agent else ()
        rows = [
            torch.zeros(
                (2, *agents, *spec.shape), dtype=TORCH_DTYPES[spec.dtype], device=self.device
            )
            for spec in self.manifest.inputs
        ]
        with torch.inference_mode():
            if self.value_network is not None:
                self.value(rows)
            if self.actor_network is not None:
                self.actor(rows)

    def value(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """V(s) for inputs [N, *shape] (already on the device) → [N]; per-agent networks:
        [N, agents, *shape] → [N, agents]."""
        assert self.value_network is not None
        out = call_network(self.value_network, inputs)
        if self.per_agent:
            return out.squeeze(-1) if out.dim() == 3 else out
        return out.reshape(out.shape[0], -1).squeeze(-1) if out.dim() > 1 else out

    def actor(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Raw actor outputs for inputs [N, *shape]: (logits,) or (loc, scale)."""
        assert self.actor_network is not None
        out = call_network(self.actor_network, inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
