"""A loaded model: its manifest, its networks on a device, and its parameter version."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
from torch import nn

from service.models.manifest import Manifest

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

    def value(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        """V(s) for inputs [N, *shape] (already on the device) → [N]."""
        assert self.value_network is not None
        out = self.value_network(*inputs)
        return out.reshape(out.shape[0], -1).squeeze(-1) if out.dim() > 1 else out

    def actor(self, inputs: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Raw actor outputs for inputs [N, *shape]: (logits,) or (loc, scale)."""
        assert self.actor_network is not None
        out = self.actor_network(*inputs)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)
