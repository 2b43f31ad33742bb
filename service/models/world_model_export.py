"""Export a DreamerV3 world model's networks beside the actor and critic (`export_model`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from service.models.manifest import InputSpec, NetworkFile, OptimizerSpec
from service.models.world_model import DEFAULT_OPTIMIZERS, WorldModelSpec


@dataclass
class WorldModelModules:
    """The torch modules of a world model and its sizes (see `service.models.world_model` for
    each network's signature). `continue_head` is optional."""

    prior: nn.Module
    posterior: nn.Module
    encoder: nn.Module
    decoder: nn.Module
    reward: nn.Module
    observations: Sequence[InputSpec]
    num_categoricals: int
    num_classes: int
    belief_size: int
    action_size: int
    continue_head: nn.Module | None = None
    reward_bins: int = 255
    optimizers: dict[str, OptimizerSpec] = field(default_factory=lambda: dict(DEFAULT_OPTIMIZERS))


def export_world_model(
    modules: WorldModelModules,
    folder: Path,
    suffix: str,
    save: Callable[[nn.Module, Path, Sequence[InputSpec]], None],
    example: Callable[[Sequence[InputSpec]], tuple[torch.Tensor, ...]],
) -> WorldModelSpec:
    """Save each network with `save(network, path, input specs)`; return the manifest section."""
    state = InputSpec("state", (modules.num_categoricals * modules.num_classes,))
    belief = InputSpec("belief", (modules.belief_size,))
    action = InputSpec("action", (modules.action_size,))
    with torch.no_grad():
        embedding_size = modules.encoder.eval().cpu()(*example(modules.observations)).shape[-1]
    embedding = InputSpec("embedding", (int(embedding_size),))
    signatures: dict[str, tuple[nn.Module | None, Sequence[InputSpec]]] = {
        "prior": (modules.prior, (state, belief, action)),
        "posterior": (modules.posterior, (belief, embedding)),
        "encoder": (modules.encoder, tuple(modules.observations)),
        "decoder": (modules.decoder, (state, belief)),
        "reward": (modules.reward, (state, belief)),
        "continue": (modules.continue_head, (state, belief)),
    }
    files: dict[str, NetworkFile] = {}
    for name, (network, specs) in signatures.items():
        if network is None:
            continue
        file = f"{name}{suffix}"
        save(network.eval().cpu(), folder / file, specs)
        files[name] = NetworkFile(file=file)
    return WorldModelSpec(
        observations=tuple(modules.observations),
        num_categoricals=modules.num_categoricals,
        num_classes=modules.num_classes,
        belief_size=modules.belief_size,
        action_size=modules.action_size,
        networks=files,
        reward_bins=modules.reward_bins,
        optimizers=dict(modules.optimizers),
    )
