"""A model's parameters as named tensors: consistent snapshots out, all-or-nothing replacement."""

from __future__ import annotations

import torch

from service.errors import FailedPrecondition, InvalidArgument
from service.finite import all_finite
from service.models.model import Model
from service.runtime.call import CallState

NETWORKS = (
    "value_network",
    "actor_network",
    # Off-policy models: the Q-network ensemble and the server-held targets.
    "qvalue_network",
    "target_qvalue_network",
    "target_actor_network",
)


def named_tensors(model: Model) -> dict[str, torch.Tensor]:
    """ "<network>.<state_dict key>" → tensor (live views of parameters and buffers)."""
    tensors: dict[str, torch.Tensor] = {}
    for network_name in NETWORKS:
        network = getattr(model, network_name)
        if network is not None:
            for key, tensor in network.state_dict(keep_vars=False).items():
                tensors[f"{network_name}.{key}"] = tensor
    if model.world_model is not None:  # DreamerV3: "world_model.<network>.<key>"
        for network_name, network in sorted(model.world_model.networks.items()):
            for key, tensor in network.state_dict(keep_vars=False).items():
                tensors[f"world_model.{network_name}.{key}"] = tensor
    if model.offpolicy is not None:  # "log_alpha", "offpolicy.<counter>"
        for key, tensor in model.offpolicy.state_dict(keep_vars=False).items():
            tensors[key if key == "log_alpha" else f"offpolicy.{key}"] = tensor
    return tensors


def parameter_bytes(model: Model) -> int:
    """The size of every named tensor of `model`, in bytes."""
    return sum(t.numel() * t.element_size() for t in named_tensors(model).values())


def snapshot(model: Model, prefixes: tuple[str, ...] = ()) -> tuple[int, dict[str, torch.Tensor]]:
    """(version, CPU copies of the named tensors starting with one of `prefixes` (all if none)),
    taken under the model's lock so an update cannot interleave."""
    with model.lock:
        version = model.parameter_version
        copies = {
            name: tensor.detach().to("cpu", copy=True)
            for name, tensor in named_tensors(model).items()
            if not prefixes or name.startswith(prefixes)
        }
    return version, copies


def replace_parameters(
    model: Model,
    staged: dict[str, torch.Tensor],
    expected_version: int | None,
    call: CallState | None = None,
) -> int:
    """Copy every tensor of `staged` (already shape- and dtype-checked) into the model under its
    lock and bump the version; return the new version.

    Every check (names, finiteness, version, whether the caller still waits) precedes the first
    copy, and the copy is the last step: the model takes all of `staged` or none of it.
    """
    if not staged:
        raise InvalidArgument("tensors: the stream carried no tensors")
    for name, value in staged.items():
        if not all_finite(value):
            first = int((~torch.isfinite(value.reshape(-1))).nonzero()[0])
            raise InvalidArgument(
                f"tensors[{name!r}]: NaN/Inf at flat index {first}; parameters must be finite "
                "(nothing was changed)"
            )
    with model.lock:
        current = named_tensors(model)
        unknown = sorted(set(staged) - set(current))
        if unknown:
            raise InvalidArgument(
                f"tensors: unknown names {unknown[:5]}; model {model.name!r} has e.g. "
                f"{sorted(current)[:5]}"
            )
        if expected_version is not None and expected_version != model.parameter_version:
            raise FailedPrecondition(
                f"parameter_version: model {model.name!r} is at version "
                f"{model.parameter_version}, not {expected_version}"
            )
        if call is not None:
            call.check("the parameters were not set")
        with torch.no_grad():
            for name, value in staged.items():
                current[name].copy_(value.to(current[name].device))
        return model.commit_version()
