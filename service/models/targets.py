"""Server-held off-policy state: target networks, SAC's temperature, update counters.

`attach_offpolicy(model)` runs once when a model with a Q-network is loaded: the targets start as
exact copies of the online networks (TorchRL's `convert_to_functional(create_target_params=True)`
followed by its updater's `init_()`), `log_alpha = log(manifest.alpha.init)`.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from service.models.model import Model


class OffPolicyState(nn.Module):
    """The scalars an off-policy learner keeps between updates.

    `log_alpha`: SAC's log-temperature (a parameter with its own optimizer).
    `target_update_counter`: TorchRL's `HardUpdate.counter` (0 … interval).
    `qvalue_updates`: applied off-policy updates so far (TD3's policy-delay counter).
    `alpha_updates`: applied updates that stepped `log_alpha` (until the first one, a request's
    `alpha_init` seeds α).
    """

    def __init__(self, alpha_init: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha_init)))
        self.register_buffer("target_update_counter", torch.zeros((), dtype=torch.int64))
        self.register_buffer("qvalue_updates", torch.zeros((), dtype=torch.int64))
        self.register_buffer("alpha_updates", torch.zeros((), dtype=torch.int64))


def _frozen_copy(network: nn.Module) -> nn.Module:
    with torch.no_grad():  # (a TorchScript module's copy would otherwise record the copy op)
        target = copy.deepcopy(network)
    for parameter in target.parameters():
        parameter.requires_grad_(False)
    return target


def attach_offpolicy(model: Model) -> Model:
    """Create the targets (Q and, when there is an actor, the actor's) and the state."""
    if model.qvalue_network is None:
        return model
    model.target_qvalue_network = _frozen_copy(model.qvalue_network)
    if model.actor_network is not None:
        model.target_actor_network = _frozen_copy(model.actor_network)
    # The counters stay on the CPU (read without a device sync); log α joins the networks.
    model.offpolicy = OffPolicyState(model.manifest.alpha.init)
    with torch.no_grad():
        log_alpha = model.offpolicy.log_alpha
        log_alpha.data = log_alpha.data.to(model.device, model.parameter_dtype)
    return model


def qvalue_probe_error(model: Model) -> str | None:
    """Run the Q-network once on two zero rows; the problem with its output, if any (a shape that
    does not reshape to [N, ensemble_size, K], or an error raised by the network)."""
    spec = model.manifest.qvalue_network
    if spec is None or model.qvalue_network is None:
        return None
    rows = [
        torch.zeros((2, *item.shape), dtype=model.input_dtype(item.name), device=model.device)
        for item in model.manifest.inputs
    ]
    if spec.kind == "state_action":
        shape = model.manifest.action.shape if model.manifest.action is not None else ()
        rows.append(torch.zeros((2, *shape), dtype=model.parameter_dtype, device=model.device))
    try:
        with torch.no_grad():
            out = model.qvalue_network(*rows)
    except Exception as error:
        return f"the qvalue_network failed on a probe batch: {error}"
    expected = 2 * spec.ensemble_size * spec.width
    if not isinstance(out, torch.Tensor) or out.numel() != expected:
        shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return (
            f"the qvalue_network returned {shape} for 2 rows; the manifest says "
            f"[N, ensemble_size={spec.ensemble_size}, {spec.width}] (or any shape of that size)"
        )
    return None
