"""The manifest's off-policy part: Q-networks, their target networks, the temperature.

    "qvalue_network": {"file": "qvalue.pt2", "kind": "state_action", "ensemble_size": 2},
    "target_update": {"rule": "soft", "tau": 0.005},
    "alpha": {"init": 1.0}

A Q-network takes the model's inputs positionally, each [N, *shape], and for `kind`
"state_action" the action [N, *action_shape] after them (TorchRL's `ValueOperator(in_keys=
[observation, action])`); "action_value" networks take the inputs only (TorchRL's `QValueActor`).
It returns every ensemble member's values at once, anything that reshapes to [N, E, K]: K = 1 for
"state_action", K = `num_actions` for "action_value", E = `ensemble_size` (so [N, 1], [N, E],
[N, A] or [N, E, A]). `service.models.ensemble.QValueEnsemble` builds such a network from E
member modules.

Target updates (`target_update`) follow TorchRL's updaters: "soft" is `SoftUpdate(tau=τ)`, i.e.
`SoftUpdate(eps=1 − τ)`: θ′ ← (1 − τ)·θ′ + τ·θ after every applied update; "hard" is
`HardUpdate(value_network_update_interval=N)`, whose counter runs 0…N: the targets are copied
on the (N + 1)-th applied update and every N + 1 after it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

QVALUE_KINDS = ("state_action", "action_value")
TARGET_RULES = ("soft", "hard")


class QValueManifestError(ValueError):
    """A malformed off-policy section (the manifest turns it into a `ManifestError`)."""


@dataclass(frozen=True)
class QValueNetworkSpec:
    """The Q-network file, its kind and its ensemble size (2 for SAC/TD3, N for REDQ)."""

    file: str
    kind: str = "state_action"
    ensemble_size: int = 1
    num_actions: int = 0  # "action_value": the head's width

    @property
    def width(self) -> int:
        """K: the values per ensemble member and row."""
        return 1 if self.kind == "state_action" else self.num_actions


@dataclass(frozen=True)
class TargetUpdateSpec:
    """How target networks follow the online ones after each applied update."""

    rule: str = "soft"
    tau: float = 0.005
    interval: int = 1000  # hard: TorchRL's value_network_update_interval


@dataclass(frozen=True)
class AlphaSpec:
    """SAC's temperature: α at load time (`log_alpha = log(init)`)."""

    init: float = 1.0


def _object(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    section = data.get(key) or {}
    if not isinstance(section, dict):
        raise QValueManifestError(f"{where}.{key}: expected an object")
    return section


def _only(section: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise QValueManifestError(f"{where}: unknown keys {unknown}; expected some of {known}")


def parse_qvalue_network(
    data: dict[str, Any], where: str, num_actions: int
) -> QValueNetworkSpec | None:
    """`data["qvalue_network"]` (None when absent). `num_actions` is the actor's (0 if none)."""
    if data.get("qvalue_network") is None:
        return None
    spot = f"{where}.qvalue_network"
    section = _object(data, "qvalue_network", where)
    _only(section, ("file", "kind", "ensemble_size", "num_actions"), spot)
    file = section.get("file")
    if not isinstance(file, str):
        raise QValueManifestError(f"{spot}.file: expected a file name, got {file!r}")
    kind = section.get("kind", "state_action")
    if kind not in QVALUE_KINDS:
        raise QValueManifestError(f"{spot}.kind: expected one of {QVALUE_KINDS}, got {kind!r}")
    size = section.get("ensemble_size", 1)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise QValueManifestError(f"{spot}.ensemble_size: expected an integer ≥ 1, got {size!r}")
    actions = section.get("num_actions", num_actions if kind == "action_value" else 0)
    if kind == "action_value" and (not isinstance(actions, int) or actions < 1):
        raise QValueManifestError(
            f"{spot}.num_actions: an action_value head needs a positive count, got {actions!r}"
        )
    if kind == "action_value" and num_actions and actions != num_actions:
        raise QValueManifestError(
            f"{spot}.num_actions: {actions} disagrees with action.num_actions {num_actions}"
        )
    return QValueNetworkSpec(
        file=file,
        kind=kind,
        ensemble_size=size,
        num_actions=actions if kind != "state_action" else 0,
    )


def parse_target_update(data: dict[str, Any], where: str) -> TargetUpdateSpec:
    """`data["target_update"]` (absent: soft, τ = 0.005)."""
    spot = f"{where}.target_update"
    section = _object(data, "target_update", where)
    _only(section, ("rule", "tau", "interval"), spot)
    spec = TargetUpdateSpec(**section)
    if spec.rule not in TARGET_RULES:
        raise QValueManifestError(f"{spot}.rule: expected one of {TARGET_RULES}, got {spec.rule!r}")
    if not (isinstance(spec.tau, (int, float)) and 0.0 < spec.tau <= 1.0):
        raise QValueManifestError(f"{spot}.tau: expected a value in (0, 1], got {spec.tau!r}")
    if not isinstance(spec.interval, int) or spec.interval < 0:
        raise QValueManifestError(
            f"{spot}.interval: expected an integer ≥ 0, got {spec.interval!r}"
        )
    return spec


def parse_alpha(data: dict[str, Any], where: str) -> AlphaSpec:
    """`data["alpha"]` (absent: α = 1)."""
    section = _object(data, "alpha", where)
    _only(section, ("init",), f"{where}.alpha")
    spec = AlphaSpec(**section)
    if not (isinstance(spec.init, (int, float)) and math.isfinite(spec.init) and spec.init > 0):
        raise QValueManifestError(f"{where}.alpha.init: expected a value > 0, got {spec.init!r}")
    return spec
