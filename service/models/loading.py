"""Load network files and model folders (a Triton-like model repository)."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from service.dtypes import TORCH_DTYPES
from service.models.manifest import MANIFEST_NAME, ManifestError, load_manifest
from service.models.model import Model
from service.models.targets import attach_offpolicy, qvalue_probe_error
from service.models.world_model import WorldModel, parse_world_model

log = logging.getLogger(__name__)


def load_network(path: Path, device: torch.device) -> nn.Module:
    """Load a `.pt2` (torch.export) or `.pt` (TorchScript) network onto `device`."""
    if not path.is_file():
        raise ManifestError(f"{path}: network file not found")
    if path.suffix == ".pt2":
        network = torch.export.load(str(path)).module()
    elif path.suffix == ".pt":
        with warnings.catch_warnings():
            # TorchScript still loads and runs in torch 2.13; the deprecation is for authors.
            warnings.filterwarnings("ignore", message=".*deprecated.*")
            network = torch.jit.load(str(path), map_location=device)
    else:
        raise ManifestError(f"{path}: expected a .pt2 (torch.export) or .pt (TorchScript) file")
    return network.to(device)


def load_model(folder: Path, device: torch.device) -> Model:
    """Load one model folder (`model.json` + network files)."""
    manifest = load_manifest(folder)
    networks = {
        key: load_network(folder / spec.file, device)
        for key, spec in (
            ("value_network", manifest.value_network),
            ("actor_network", manifest.actor_network),
            ("qvalue_network", manifest.qvalue_network),
        )
        if spec is not None
    }
    model = attach_offpolicy(Model(manifest=manifest, device=device, **networks))
    problem = qvalue_probe_error(model) or per_agent_probe_error(model)
    if problem is not None:
        raise ManifestError(f"{folder / MANIFEST_NAME}: {problem}")
    model.world_model = _load_world_model(folder, model, device)
    return model


def per_agent_probe_error(model: Model) -> str | None:
    """Per-agent networks (`agent_networks: "per_agent"`) must keep the agent dimension: the
    value network [2, n, *shape] → [2, n, 1] (or [2, n]), each actor output [2, n, ...]. Run on
    a zero batch; None when the model is fine."""
    if not model.per_agent:
        return None
    agents = model.manifest.agents
    rows = [
        torch.zeros((2, agents, *spec.shape), dtype=TORCH_DTYPES[spec.dtype], device=model.device)
        for spec in model.manifest.inputs
    ]
    try:
        with torch.inference_mode():
            value = None if model.value_network is None else model.value_network(*rows)
            actor = () if model.actor_network is None else model.actor(rows)
    except Exception as error:  # any failure of the user's network is reported
        return f"agent_networks: the networks refuse inputs [N, {agents}, *shape]: {error}"
    if value is not None and tuple(value.shape) not in ((2, agents, 1), (2, agents)):
        return (
            f"value_network: a per_agent value network answers [N, {agents}, 1] for inputs "
            f"[N, {agents}, *shape]; got {list(value.shape)} for N = 2"
        )
    spec = model.manifest.action
    tail: tuple[int, ...] | None = None  # a single head's parameter shape
    if spec is not None and spec.distribution != "composite":
        tail = (spec.num_actions,) if spec.distribution == "categorical" else tuple(spec.shape)
    for leaf in _tensors(actor):
        wrong = leaf.dim() < 2 or tuple(leaf.shape[:2]) != (2, agents)
        if wrong or (tail is not None and tuple(leaf.shape[2:]) != tail):
            expected = (
                f"[N, {agents}, {', '.join(map(str, tail))}]" if tail else (f"[N, {agents}, ...]")
            )
            return (
                f"actor_network: a per_agent actor answers {expected} for inputs "
                f"[N, {agents}, *shape]; got an output of shape {list(leaf.shape)} for N = 2"
            )
    return None


def _tensors(outputs: object):
    """The tensors of an actor's outputs (a tensor, a tuple or a nested mapping)."""
    if isinstance(outputs, torch.Tensor):
        yield outputs
    elif isinstance(outputs, dict):
        for value in outputs.values():
            yield from _tensors(value)
    elif isinstance(outputs, (tuple, list)):
        for value in outputs:
            yield from _tensors(value)


def _load_world_model(folder: Path, model: Model, device: torch.device) -> WorldModel | None:
    """The manifest's optional `world_model` section and its networks (DreamerV3)."""
    data = json.loads((folder / MANIFEST_NAME).read_text()).get("world_model")
    if data is None:
        return None
    spec = parse_world_model(data, model.manifest.inputs, str(folder / MANIFEST_NAME))
    model.manifest = replace(model.manifest, world_model=spec)
    networks = {name: load_network(folder / f.file, device) for name, f in spec.networks.items()}
    return WorldModel(spec=spec, networks=networks)


def load_repository(root: Path, device: torch.device) -> dict[str, Model]:
    """Load every model folder under `root` (each sub-folder holding a `model.json`)."""
    if not root.is_dir():
        raise ManifestError(f"{root}: model repository folder not found")
    models: dict[str, Model] = {}
    for folder in sorted(p for p in root.iterdir() if (p / MANIFEST_NAME).is_file()):
        model = load_model(folder, device)
        if model.name in models:
            raise ManifestError(f"{folder}: model name {model.name!r} is used twice")
        models[model.name] = model
        log.info("loaded model %s from %s on %s", model.name, folder, device)
    if not models:
        raise ManifestError(f"{root}: no sub-folder holds a {MANIFEST_NAME}")
    return models
