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
