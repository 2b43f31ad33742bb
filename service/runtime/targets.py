"""Target-network updates: one fused pass over every target tensor (no Python loop per tensor).

soft (TorchRL's `SoftUpdate(tau=τ)`, stored as `eps = 1 − τ`):
    θ′ ← θ′ + (1 − eps)·(θ − θ′)     one `torch._foreach_lerp_` over all target tensors
hard (TorchRL's `HardUpdate(value_network_update_interval=N)`):
    counter == N → θ′ ← θ (one `torch._foreach_copy_`) and counter ← 0; else counter + 1.
    The counter starts at 0, so the first copy is on the (N + 1)-th update.

The weight is computed as TorchRL computes it, `1 − (1 − τ)`, so both sides lerp with the same
float.
"""

from __future__ import annotations

import torch
from torch import nn

from service.models.model import Model
from service.models.qvalue import TargetUpdateSpec

#: A target network → the online network it follows.
SOURCES = {"target_qvalue_network": "qvalue_network", "target_actor_network": "actor_network"}


def _floating(network: nn.Module) -> list[torch.Tensor]:
    return [t for t in network.state_dict(keep_vars=False).values() if t.is_floating_point()]


def target_pairs(model: Model, networks: tuple[str, ...]) -> tuple[list, list]:
    """(target tensors, their sources) for the named target networks ("qvalue", "actor")."""
    targets: list[torch.Tensor] = []
    sources: list[torch.Tensor] = []
    for name in networks:
        target = getattr(model, f"target_{name}_network")
        source = getattr(model, SOURCES[f"target_{name}_network"])
        targets += _floating(target)
        sources += _floating(source)
    return targets, sources


def will_move(rule: TargetUpdateSpec, counter: int) -> bool:
    """Whether this update moves the targets (soft: always; hard: when the counter fires)."""
    return rule.rule == "soft" or counter == rule.interval


def next_counter(rule: TargetUpdateSpec, counter: int) -> int:
    """TorchRL's HardUpdate counter after one step."""
    if rule.rule == "soft":
        return counter
    return 0 if counter == rule.interval else counter + 1


def move_targets(rule: TargetUpdateSpec, targets: list, sources: list) -> None:
    """One fused pass: lerp (soft) or copy (hard) every target tensor towards its source."""
    with torch.no_grad():
        if rule.rule == "soft":
            torch._foreach_lerp_(targets, sources, 1.0 - (1.0 - rule.tau))
        else:
            torch._foreach_copy_(targets, sources)
