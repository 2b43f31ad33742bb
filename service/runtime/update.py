"""One optimizer step on a model, as a transaction: all of it or none of it.

Order (under the model's lock, which the caller holds): backward → gradient norm (clipped as the
manifest says) → refuse a non-finite norm → refuse if the caller gave up → snapshot → step →
refuse non-finite parameters (restore the snapshot) → refuse if the caller gave up meanwhile
(restore) → commit (version + 1, loss state). Every refusal leaves the parameters, the
optimizer's state and the version as they were.

Off-policy losses add two things to the same transaction (`Extras`): further optimizers stepped
after the main one (SAC's temperature), and an in-place change after the steps (the target
networks' update); their tensors are in the snapshot and in the finiteness check.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from service.errors import InvalidArgument
from service.models.model import Model
from service.runtime.call import CallState


def optimizer_of(model: Model) -> tuple[torch.optim.Optimizer, list[nn.Parameter]]:
    """The model's optimizer over both networks' parameters, created on first use."""
    if model.optimizer is None:
        spec = model.manifest.optimizer
        seen: dict[int, nn.Parameter] = {}
        for network in (model.value_network, model.actor_network, model.qvalue_network):
            if network is not None:
                seen.update({id(p): p for p in network.parameters() if p.requires_grad})
        parameters = list(seen.values())
        if spec.name == "sgd":
            optimizer: torch.optim.Optimizer = torch.optim.SGD(
                parameters, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
            )
        else:
            optimizer = torch.optim.Adam(parameters, lr=spec.lr, weight_decay=spec.weight_decay)
        model.optimizer = optimizer
    params = [p for group in model.optimizer.param_groups for p in group["params"]]
    return model.optimizer, params


class _Snapshot:
    """The parameters and the optimizer's per-parameter state, copied before a step so a refused
    step can be undone (a plain tensor copy: `copy.deepcopy` of the state dict costs several
    times more on large models)."""

    def __init__(self, optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter]) -> None:
        self.parameters = [p.detach().clone() for p in parameters]
        self.state = {
            key: {k: v.clone() if torch.is_tensor(v) else copy.copy(v) for k, v in value.items()}
            for key, value in optimizer.state.items()
        }

    def restore(self, optimizer: torch.optim.Optimizer, parameters: list[nn.Parameter]) -> None:
        with torch.no_grad():
            torch._foreach_copy_(parameters, self.parameters)
        optimizer.state.clear()
        optimizer.state.update(self.state)


@dataclass
class Extras:
    """More of one transaction: `optimizers` (each with its parameters) stepped after the main
    one, outside its gradient clipping; `before_step()` runs once the snapshot is taken (it may
    change only those parameters); then `after_step()`, which changes `changed` in place."""

    optimizers: Sequence[tuple[torch.optim.Optimizer, list[nn.Parameter]]] = ()
    before_step: Callable[[], None] | None = None
    after_step: Callable[[], None] | None = None
    changed: list[torch.Tensor] = field(default_factory=list)


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """One host sync for the whole list."""
    return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())


def apply_update(
    model: Model,
    loss: torch.Tensor,
    call: CallState,
    commit: Callable[[], None],
    extras: Extras | None = None,
) -> float:
    """Backward `loss` and take one optimizer step, transactionally (see the module docstring);
    `commit()` runs last, with the step applied. Returns the gradient norm before clipping."""
    extras = extras or Extras()
    optimizer, parameters = optimizer_of(model)
    optimizers = [(optimizer, parameters), *extras.optimizers]
    for each, _ in optimizers:
        each.zero_grad(set_to_none=True)
    try:
        loss.backward()
        limit = model.manifest.optimizer.max_grad_norm
        norm = float(nn.utils.clip_grad_norm_(parameters, limit if limit is not None else math.inf))
        extra_grads = [
            p.grad for _, group in extras.optimizers for p in group if p.grad is not None
        ]
        if not math.isfinite(norm) or (extra_grads and not _all_finite(extra_grads)):
            raise InvalidArgument(
                f"apply_update: the gradient norm is not finite ({norm}); nothing was applied "
                f"(model {model.name!r} stays at version {model.parameter_version}). Check "
                "trajectory.sample_log_prob against the actor's log-probabilities, and the "
                "advantage's scale"
            )
        call.check("the update was not applied")
        snapshots = [(_Snapshot(each, group), each, group) for each, group in optimizers]
        changed = [t.detach().clone() for t in extras.changed]
        try:
            if extras.before_step is not None:
                extras.before_step()
            for each, _ in optimizers:
                each.step()
            if extras.after_step is not None:
                extras.after_step()
            every = [p for _, group in optimizers for p in group] + list(extras.changed)
            if not _all_finite(every):
                raise InvalidArgument(
                    f"apply_update: the step would make model {model.name!r}'s parameters "
                    f"non-finite (gradient norm {norm:.6g}); nothing was applied. Lower the "
                    "learning rate or set optimizer.max_grad_norm in the manifest"
                )
            call.check("the update was not applied")
        except BaseException:
            for snapshot, each, group in snapshots:
                snapshot.restore(each, group)
            if changed:
                with torch.no_grad():
                    torch._foreach_copy_(extras.changed, changed)
            raise
        commit()
        return norm
    finally:
        for each, _ in optimizers:
            each.zero_grad(set_to_none=True)
