"""Write a model folder from torch modules: the helper behind `advantage-service export-model`."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from service.dtypes import TORCH_DTYPES
from service.models.manifest import ActionSpec, Defaults, InputSpec, Manifest, NetworkFile
from service.models.world_model_export import WorldModelModules, export_world_model

# Example batch used to trace the networks; > 1 so torch.export keeps the batch size symbolic.
_EXAMPLE_ROWS = 8


def _example_inputs(inputs: Sequence[InputSpec]) -> tuple[torch.Tensor, ...]:
    return tuple(
        torch.zeros((_EXAMPLE_ROWS, *spec.shape), dtype=TORCH_DTYPES[spec.dtype]) for spec in inputs
    )


def _save_network(network: nn.Module, path: Path, inputs: Sequence[InputSpec]) -> None:
    example = _example_inputs(inputs)
    if path.suffix == ".pt2":
        batch = torch.export.Dim("batch")
        exported = torch.export.export(
            network, example, dynamic_shapes=tuple({0: batch} for _ in example)
        )
        torch.export.save(exported, str(path))
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            # strict=False: a composite actor returns a dict (head → parameters).
            torch.jit.trace(network, example, strict=False).save(str(path))


def export_model(
    folder: Path | str,
    name: str,
    inputs: Sequence[InputSpec],
    *,
    value_network: nn.Module | None = None,
    actor_network: nn.Module | None = None,
    action: ActionSpec | None = None,
    defaults: Defaults | None = None,
    file_format: str = "torch.export",
    world_model: WorldModelModules | None = None,
) -> Manifest:
    """Serialise the networks into `folder` with a `model.json`; return the manifest.

    `file_format` is "torch.export" (`.pt2`, the default) or "torchscript" (`.pt`). Networks are
    exported in eval mode on the CPU with a symbolic batch dimension. `world_model` (DreamerV3)
    adds the world-model networks and the manifest's `world_model` section; the model's
    `inputs` are then its latents, `state` and `belief`.
    """
    if file_format not in ("torch.export", "torchscript"):
        raise ValueError(
            f"file_format: expected 'torch.export' or 'torchscript', got {file_format!r}"
        )
    suffix = ".pt2" if file_format == "torch.export" else ".pt"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, NetworkFile] = {}
    for key, network in (("value_network", value_network), ("actor_network", actor_network)):
        if network is None:
            continue
        file = key.removesuffix("_network") + suffix
        _save_network(network.eval().cpu(), folder / file, inputs)
        files[key] = NetworkFile(file=file)
    spec = (
        export_world_model(world_model, folder, suffix, _save_network, _example_inputs)
        if world_model is not None
        else None
    )
    manifest = Manifest(
        name=name,
        inputs=tuple(inputs),
        action=action,
        defaults=defaults or Defaults(),
        world_model=spec,
        **files,
    )
    manifest.save(folder)
    return manifest
