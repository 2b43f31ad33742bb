"""Write a model folder from torch modules: the helper behind `advantage-service export-model`."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from service.dtypes import TORCH_DTYPES
from service.models.ensemble import QValueEnsemble
from service.models.manifest import ActionSpec, Defaults, InputSpec, Manifest, NetworkFile
from service.models.qvalue import AlphaSpec, QValueNetworkSpec, TargetUpdateSpec
from service.models.world_model_export import WorldModelModules, export_world_model

# Example batch used to trace the networks; > 1 so torch.export keeps the batch size symbolic.
_EXAMPLE_ROWS = 8


def _example_inputs(
    inputs: Sequence[InputSpec], agents: tuple[int, ...] = ()
) -> tuple[torch.Tensor, ...]:
    """Zero rows [8, *agents, *shape]: `agents` is (n,) for per-agent networks."""
    return tuple(
        torch.zeros((_EXAMPLE_ROWS, *agents, *spec.shape), dtype=TORCH_DTYPES[spec.dtype])
        for spec in inputs
    )


def _takes_var_args(network: nn.Module) -> bool:
    parameters = list(inspect.signature(network.forward).parameters.values())
    return len(parameters) == 1 and parameters[0].kind is inspect.Parameter.VAR_POSITIONAL


def _save_network(
    network: nn.Module,
    path: Path,
    inputs: Sequence[InputSpec],
    action: torch.Tensor | None = None,
    agents: tuple[int, ...] = (),
) -> None:
    example = _example_inputs(inputs, agents)
    if action is not None:  # a state-action Q-network takes the action after the inputs
        example = (*example, action)
    if path.suffix == ".pt2":
        batch = torch.export.Dim("batch")
        shapes: tuple = tuple({0: batch} for _ in example)
        if _takes_var_args(network):  # forward(*inputs): export sees one tuple argument
            shapes = (shapes,)
        exported = torch.export.export(network, example, dynamic_shapes=shapes)
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
    qvalue_network: nn.Module | Sequence[nn.Module] | None = None,
    qvalue_kind: str = "state_action",
    num_actions: int = 0,
    target_update: TargetUpdateSpec | None = None,
    alpha: AlphaSpec | None = None,
    agents: int = 0,
    agent_networks: str = "shared",
) -> Manifest:
    """Serialise the networks into `folder` with a `model.json`; return the manifest.

    `file_format` is "torch.export" (`.pt2`, the default) or "torchscript" (`.pt`). Networks are
    exported in eval mode on the CPU with a symbolic batch dimension. `world_model` (DreamerV3)
    adds the world-model networks and the manifest's `world_model` section; the model's
    `inputs` are then its latents, `state` and `belief`.

    `qvalue_network`: one Q-network, or a list of E members saved as one `QValueEnsemble`
    (`service.models.qvalue` describes the contract); `qvalue_kind` "state_action" (the network
    takes the action after the inputs; needs `action`) or "action_value" (`num_actions` wide,
    default the actor's `action.num_actions`).

    `agents`: the agent count requests carry (the manifest's `agents`). With `agent_networks`
    "per_agent" the value and actor networks are exported taking [N, agents, *shape] (every
    agent of a step together: per-agent parameters, e.g. `PerAgentNetworks` or TorchRL's
    `MultiAgentMLP(share_params=False)`, or a centralised critic).
    """
    if agent_networks == "per_agent" and agents < 1:
        raise ValueError("agents: per_agent networks need the agent count (agents > 0)")
    grid = (agents,) if agent_networks == "per_agent" else ()
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
        _save_network(network.eval().cpu(), folder / file, inputs, agents=grid)
        files[key] = NetworkFile(file=file)
    spec = (
        export_world_model(world_model, folder, suffix, _save_network, _example_inputs)
        if world_model is not None
        else None
    )
    qvalue_spec = None
    if qvalue_network is not None:
        members = list(qvalue_network) if not isinstance(qvalue_network, nn.Module) else None
        network = QValueEnsemble(members) if members is not None else qvalue_network
        example_action = None
        if qvalue_kind == "state_action":
            if action is None:
                raise ValueError("action: a state_action Q-network needs the action's spec")
            example_action = torch.zeros(
                (_EXAMPLE_ROWS, *action.shape), dtype=TORCH_DTYPES[inputs[0].dtype]
            )
        network = network.eval().cpu()
        with torch.no_grad():
            probe = _example_inputs(inputs)
            out = network(*probe, *(() if example_action is None else (example_action,)))
        width = 1 if qvalue_kind == "state_action" else (num_actions or action.num_actions)
        ensemble = out.numel() // (_EXAMPLE_ROWS * width)
        file = "qvalue" + suffix
        _save_network(network, folder / file, inputs, example_action)
        qvalue_spec = QValueNetworkSpec(
            file=file,
            kind=qvalue_kind,
            ensemble_size=ensemble,
            num_actions=0 if qvalue_kind == "state_action" else width,
        )
    manifest = Manifest(
        qvalue_network=qvalue_spec,
        target_update=target_update or TargetUpdateSpec(),
        alpha=alpha or AlphaSpec(),
        name=name,
        inputs=tuple(inputs),
        action=action,
        agents=agents,
        agent_networks=agent_networks,
        defaults=defaults or Defaults(),
        world_model=spec,
        **files,
    )
    manifest.save(folder)
    return manifest
