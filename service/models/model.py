"""A loaded model: its manifest, its networks on a device, and its parameter version."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from service.models.manifest import Manifest

if TYPE_CHECKING:
    from service.batching import Batcher

TORCH_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}


@dataclass
class Model:
    """Networks of one model on one device.

    `lock` serialises parameter updates against evaluations, so a request sees one consistent
    parameter version; `parameter_version` increases by one on each update.
    """

    manifest: Manifest
    device: torch.device
    value_network: nn.Module | None = None
    actor_network: nn.Module | None = None
    parameter_version: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # Dynamic batcher of value evaluations (service.batching), attached by the server when
    # batching is enabled for this model; None = every request evaluates on its own.
    batcher: Batcher | None = field(default=None, repr=False, compare=False)
    # Training state for ComputeLoss updates: the optimizer (created on first update) and
    # per-model loss state such as KL-PEN's adaptive β.
    optimizer: torch.optim.Optimizer | None = field(default=None, repr=False)
    loss_state: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The model's unique name."""
        return self.manifest.name

    @property
    def parameter_dtype(self) -> torch.dtype:
        """dtype of the first floating parameter (float32 when the networks have none)."""
        for network in (self.value_network, self.actor_network):
            if network is None:
                continue
            for parameter in network.parameters():
                if parameter.is_floating_point():
                    return parameter.dtype
        return torch.float32

    def input_dtype(self, key: str) -> torch.dtype:
        """dtype the networks expect for input `key`."""
        spec = next(spec for spec in self.manifest.inputs if spec.name == key)
        return TORCH_DTYPES[spec.dtype]

    def warmup(self) -> None:
        """Run each network once on a small zero batch (first calls pay one-off set-up costs)."""
        rows = [
            torch.zeros((2, *spec.shape), dtype=TORCH_DTYPES[spec.dtype], device=self.device)
            for spec in self.manifest.inputs
        ]
        with torch.inference_mode():
            if self.value_network is not None:
                self.value(rows)
            if self.actor_network is not None:
                self.actor(rows)

    def value(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """V(s) for inputs [N, *shape] (already on the device) → [N]."""
        assert self.value_network is not None
        out = self.value_network(*inputs)
        return out.reshape(out.shape[0], -1).squeeze(-1) if out.dim() > 1 else out

    def value_and_version(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
        """V(s) [N] for rows [N, *shape] and the parameter version that produced it.

        Routed through the dynamic batcher when one is attached (its thread takes `lock` around
        the merged forward pass and reads the version under it); otherwise evaluated here under
        `lock`. A caller already holding `lock` evaluates directly (waiting in the queue while
        holding it would deadlock with the batcher thread).
        """
        batcher = self.batcher
        if batcher is not None:
            from service.batching import lock_owned

            if not lock_owned(self.lock):
                return batcher.submit(inputs)
        with self.lock:
            return self.value(inputs), self.parameter_version

    def actor(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Raw actor outputs for inputs [N, *shape]: (logits,) or (loc, scale)."""
        assert self.actor_network is not None
        out = self.actor_network(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
