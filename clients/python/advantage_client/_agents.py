"""TorchRL's multi-agent TensorDicts (its MARL layout) → the keyword arrays of a call.

A MARL tensordict has batch_size [*B, T] and keeps the per-agent entries in a group
(``"agents"`` by default in TorchRL's examples) whose batch is [*B, T, n_agents]:
``(group, key)`` observations, ``(group, "action")``, ``(group, "sample_log_prob")``,
``("next", group, "reward")`` [*B, T, n, 1], and ``("next", group, "done" | "terminated")``
(per agent) or ``("next", "done" | "terminated")`` (shared, [*B, T, 1]); state values at
``(group, "state_value")`` and ``("next", group, "state_value")``. Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from advantage_client._codec import is_tensordict

__all__ = ["group_arrays", "write_group_outputs"]

# TorchRL 0.14 writes "action_log_prob"; older versions "sample_log_prob". First found wins.
_LOG_PROB_KEYS = ("sample_log_prob", "action_log_prob")


def _squeezed(value: Any, lead: tuple[int, ...], name: str) -> Any:
    """`value` [*lead] or [*lead, 1] → [*lead]."""
    shape = tuple(value.shape)
    if shape == (*lead, 1):
        return value.squeeze(-1)
    if shape == lead:
        return value
    raise ValueError(f"{name}: expected shape {[*lead, 1]} or {list(lead)}, got {list(shape)}")


def _flag(td: Any, group: str, name: str, per_agent: tuple[int, ...]) -> Any:
    """A per-agent flag [*B, T, n], else the shared one [*B, T] (None when neither exists)."""
    value = td.get(("next", group, name), None)
    if value is not None:
        return _squeezed(value, per_agent, f"('next', {group!r}, {name!r})")
    value = td.get(("next", name), None)
    if value is None:
        return None
    return _squeezed(value, tuple(td.batch_size), f"('next', {name!r})")


def group_arrays(
    td: Any, group: str, in_keys: Sequence[str], *, for_loss: bool, send_values: bool = True
) -> tuple[dict[str, Any], int]:
    """(keyword arrays in the wire's agent layout, n_agents) of a MARL tensordict."""
    if not is_tensordict(td) or td.batch_dims < 1:
        raise TypeError("agent_group needs a TensorDict with batch_size [*B, T]")
    members = td.get(group, None)
    if members is None or not is_tensordict(members) or members.batch_dims != td.batch_dims + 1:
        raise KeyError(
            f"the TensorDict has no agent group {group!r} with batch_size [*B, T, n_agents]"
        )
    per_agent = tuple(members.batch_size)
    n_agents = per_agent[-1]
    reward = td.get(("next", group, "reward"), None)
    if reward is None:
        raise KeyError(f"the TensorDict has no ('next', {group!r}, 'reward')")
    arrays: dict[str, Any] = {
        "reward": _squeezed(reward, per_agent, f"('next', {group!r}, 'reward')"),
        "done": _flag(td, group, "done", per_agent),
        "terminated": _flag(td, group, "terminated", per_agent),
    }
    if arrays["done"] is None:
        raise KeyError(f"the TensorDict has no ('next', {group!r}, 'done') nor ('next', 'done')")
    value = td.get((group, "state_value"), None)
    next_value = td.get(("next", group, "state_value"), None)
    with_values = send_values and value is not None and next_value is not None
    if with_values:
        arrays["state_value"] = _squeezed(value, per_agent, "state_value")
        arrays["next_state_value"] = _squeezed(next_value, per_agent, "next state_value")
    observation, next_observation = {}, {}
    for key in in_keys:
        obs, nxt = td.get((group, key), None), td.get(("next", group, key), None)
        if obs is None or nxt is None:
            if with_values and not for_loss:  # the values are sent: no network pass
                continue
            absent = (group, key) if obs is None else ("next", group, key)
            raise KeyError(f"the TensorDict has no observation key {absent!r}")
        observation[key], next_observation[key] = obs, nxt
    arrays["observation"], arrays["next_observation"] = observation, next_observation
    action = td.get((group, "action"), None)
    if action is not None:
        arrays["action"] = action
    key = next((k for k in _LOG_PROB_KEYS if td.get((group, k), None) is not None), None)
    if key is not None:
        arrays["sample_log_prob"] = _squeezed(td.get((group, key)), per_agent, key)
    if for_loss:
        for name in ("advantage", "value_target"):
            entry = td.get((group, name), None)
            if entry is not None:
                arrays[name] = _squeezed(entry, per_agent, name)
    mask = td.get(("collector", "mask"), None)
    if mask is not None:
        arrays["mask"] = _squeezed(mask, tuple(td.batch_size), "('collector', 'mask')")
    return arrays, n_agents


def write_group_outputs(td: Any, group: str, outputs: dict[str, Any]) -> Any:
    """A new TensorDict sharing `td`'s tensors, with each output [*B, T, n] written as
    (group, name) [*B, T, n, 1] (TorchRL's MARL keys)."""
    out = td.copy()
    per_agent = tuple(td.get(group).batch_size)
    for name, value in outputs.items():
        if value is None:
            continue
        if tuple(value.shape) != per_agent:
            raise ValueError(
                f"{name}: the server returned shape {list(value.shape)}, expected {list(per_agent)}"
            )
        key = (group, name) if not name.startswith("next_") else ("next", group, name[5:])
        out.set(key, value.unsqueeze(-1))
    return out
