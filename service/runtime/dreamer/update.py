"""One Dreamer learner step: up to three optimizer steps (actor, critic, world model) as one
transaction, then the slow critic's EMA and the return EMAs, then one version.

DreamerV3 trains each part on its own loss with its own optimizer (Hafner et al. 2023): the
world model on L_model, the actor on L_actor, the critic on L_value. Each group's gradient is
taken from its own loss only (`torch.autograd.grad` over the group's parameters, so the actor's
loss never moves the world model or the critic it differentiates through, as TorchRL's
`hold_out_net` ensures), clipped by the group's `max_grad_norm`. Then, as in
`service.runtime.update`: refuse a non-finite norm → refuse if the caller gave up → snapshot
every group → step every group → refuse non-finite parameters (restore all) → refuse if the
caller gave up meanwhile (restore all) → commit. A refusal leaves every parameter, optimizer
state, the slow critic, the return EMAs and the version as they were.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from service.errors import InvalidArgument
from service.models.model import Model
from service.models.world_model import OPTIMIZER_GROUPS
from service.runtime.call import CallState
from service.runtime.dreamer.networks import world_model_of
from service.runtime.dreamer.state import make_optimizer, training_state
from service.runtime.update import _all_finite, _Snapshot


@dataclass
class GroupStep:
    """A group's loss and what its step did."""

    loss: torch.Tensor
    grad_norm: float = 0.0


def group_parameters(model: Model, group: str) -> list[nn.Parameter]:
    """The trainable parameters of `group` ("actor", "critic", "world_model")."""
    if group == "world_model":
        return world_model_of(model).parameters()
    network = model.actor_network if group == "actor" else model.value_network
    assert network is not None
    seen = {id(p): p for p in network.parameters() if p.requires_grad}
    return list(seen.values())


def _optimizer(model: Model, group: str) -> tuple[torch.optim.Optimizer, list[nn.Parameter]]:
    state = training_state(model)
    if group not in state.optimizers:
        spec = world_model_of(model).spec.optimizers[group]
        state.optimizers[group] = make_optimizer(spec, group_parameters(model, group))
    optimizer = state.optimizers[group]
    return optimizer, [p for g in optimizer.param_groups for p in g["params"]]


def apply_dreamer_update(
    model: Model, steps: dict[str, GroupStep], call: CallState, commit: Callable[[], None]
) -> None:
    """Step every group of `steps` transactionally (see the module docstring); `commit()` runs
    last. Fills each step's `grad_norm` (before clipping)."""
    assert set(steps) <= set(OPTIMIZER_GROUPS)
    spec = world_model_of(model).spec.optimizers
    groups = {name: _optimizer(model, name) for name in steps}
    try:
        for name, (optimizer, parameters) in groups.items():
            optimizer.zero_grad(set_to_none=True)
            grads = torch.autograd.grad(
                steps[name].loss, parameters, retain_graph=True, allow_unused=True
            )
            for parameter, grad in zip(parameters, grads, strict=True):
                parameter.grad = torch.zeros_like(parameter) if grad is None else grad
            limit = spec[name].max_grad_norm
            norm = float(
                nn.utils.clip_grad_norm_(parameters, limit if limit is not None else math.inf)
            )
            steps[name].grad_norm = norm
            if not math.isfinite(norm):
                raise InvalidArgument(
                    f"apply_update: the {name} gradient norm is not finite ({norm}); nothing was "
                    f"applied (model {model.name!r} stays at version {model.parameter_version})"
                )
        call.check("the update was not applied")
        snapshots = {name: _Snapshot(*groups[name]) for name in groups}
        for optimizer, _ in groups.values():
            optimizer.step()
        try:
            if not _all_finite([p for _, params in groups.values() for p in params]):
                raise InvalidArgument(
                    f"apply_update: the step would make model {model.name!r}'s parameters "
                    "non-finite; nothing was applied. Lower the learning rates or set "
                    "max_grad_norm in the manifest's world_model.optimizers"
                )
            call.check("the update was not applied")
        except BaseException:
            for name, snapshot in snapshots.items():
                snapshot.restore(*groups[name])
            raise
        commit()
    finally:
        for optimizer, _ in groups.values():
            optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def soft_update(slow: nn.Module, online: nn.Module, rate: float) -> None:
    """slow ← (1 − rate) · slow + rate · online, parameter by parameter (TorchRL's
    `SoftUpdate(tau=rate)`; DreamerV3's slow critic uses rate 0.02)."""
    slow_params = list(slow.parameters())
    online_params = list(online.parameters())
    torch._foreach_lerp_(slow_params, [p.detach() for p in online_params], rate)
