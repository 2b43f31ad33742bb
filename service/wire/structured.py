"""A Trajectory's structure beyond single-head, unpadded data: the mask and composite heads.

`trajectory.mask` [*B, T] bool marks valid steps (TorchRL's `("collector", "mask")`).
`trajectory.action_heads` carries one action tensor per head of a composite actor;
`trajectory.sample_log_prob_heads` / `log_prob_heads` per-head log-probabilities (TorchRL's
non-aggregate mode), which are summed here into the one log-probability every loss uses (the
log-probability of a composite action is the sum of its heads').
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from service.dtypes import dtype_name
from service.errors import InvalidArgument
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.trajectory import Trajectory
from service.wire.agents import AgentLayout

#: `codec.decode_tensor` and `codec.decode_per_step`, handed in by the codec (which calls this
#: module while it decodes a Trajectory).
TensorDecoder = Callable[..., torch.Tensor]


def decode_mask(
    message: pb.Trajectory, steps: tuple[int, ...], layout: AgentLayout, decode: TensorDecoder
) -> torch.Tensor | None:
    """`trajectory.mask` as [*B, T] bool (agent-major with agents), or None when absent."""
    if not message.HasField("mask"):
        return None
    mask = decode(message.mask, "trajectory.mask")
    if mask.dtype != torch.bool:
        raise InvalidArgument(
            f"trajectory.mask: expected dtype bool (True = a valid step), got "
            f"{dtype_name(mask.dtype)}"
        )
    mask = layout.mask(mask, "trajectory.mask")
    if tuple(mask.shape) != steps:
        raise InvalidArgument(
            f"trajectory.mask: expected shape {list(steps)} (the reward's [*B, T]), got "
            f"{list(mask.shape)}"
        )
    if not bool(mask.any()):
        raise InvalidArgument("trajectory.mask: every step is masked; send at least one valid step")
    return mask


def _summed(
    entries,
    field: str,
    steps: tuple[int, ...],
    trajectory: Trajectory,
    layout: AgentLayout,
    decode_per_step: TensorDecoder,
) -> torch.Tensor:
    total: torch.Tensor | None = None
    for key in sorted(entries):
        part = decode_per_step(
            entries[key],
            f"trajectory.{field}[{key!r}]",
            steps,
            trajectory.dtype,
            finite=True,
            layout=layout,
            where=trajectory.mask,
        )
        total = part if total is None else total + part
    assert total is not None
    return total


def decode_structure(
    message: pb.Trajectory,
    trajectory: Trajectory,
    layout: AgentLayout,
    decode: TensorDecoder,
    decode_per_step: TensorDecoder,
) -> Trajectory:
    """Add the composite heads of `message` to `trajectory` (the mask is already in it)."""
    steps = trajectory.batch_shape
    changes: dict[str, object] = {}
    if message.action_heads:
        if trajectory.action is not None:
            raise InvalidArgument(
                "trajectory.action / trajectory.action_heads: send one of them (a composite "
                "actor's actions go in action_heads, one entry per head)"
            )
        heads = {}
        for key in sorted(message.action_heads):
            name = f"trajectory.action_heads[{key!r}]"
            action = layout.leading(decode(message.action_heads[key], name), name)
            if tuple(action.shape[: len(steps)]) != steps:
                raise InvalidArgument(
                    f"{name}: expected shape [*B, T, *head_shape] with [*B, T] = "
                    f"{list(steps)}, got {list(action.shape)}"
                )
            heads[key] = action
        changes["action_heads"] = heads
    for field, single in (
        ("sample_log_prob_heads", "sample_log_prob"),
        ("log_prob_heads", "log_prob"),
    ):
        entries = getattr(message, field)
        if not entries:
            continue
        if getattr(trajectory, single) is not None:
            raise InvalidArgument(
                f"trajectory.{single} / trajectory.{field}: send the aggregated "
                "log-probability or the per-head ones, not both"
            )
        changes[single] = _summed(entries, field, steps, trajectory, layout, decode_per_step)
        changes["log_prob_heads"] = {
            **(changes.get("log_prob_heads") or {}),  # type: ignore[dict-item]
            field: tuple(sorted(entries)),
        }
    if not changes:
        return trajectory
    return dataclasses.replace(trajectory, **changes)  # type: ignore[arg-type]
