"""Protobuf ↔ tensors and trajectories: the wire encoding of a tensor, said once.

Tensors travel as dtype + shape + raw little-endian row-major bytes. Decoding wraps the `bytes`
object protobuf hands out (one copy out of its arena, inside protobuf) without a further copy
(`torch.frombuffer`); those tensors are read-only by contract: nothing downstream writes into its
inputs.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Mapping

import torch

from service.dtypes import COMPUTE_DTYPES, TORCH_DTYPES
from service.dtypes import dtype_name as torch_dtype_name
from service.errors import InvalidArgument
from service.finite import all_finite
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.trajectory import Trajectory
from service.wire.agents import AgentLayout
from service.wire.structured import decode_mask, decode_structure

if sys.byteorder != "little":  # pragma: no cover - no big-endian CI machine
    raise ImportError("advantage-service decodes raw little-endian tensors in place")

# The request's bytes are immutable; torch warns once that it cannot enforce that. Nothing in the
# service writes into decoded inputs, so the zero-copy view is safe.
warnings.filterwarnings("ignore", message="The given buffer is not writable")

# The wire enum from the one dtype table: name "float32" ↔ DTYPE_FLOAT32.
DTYPE_TO_TORCH: dict[int, torch.dtype] = {
    pb.DType.Value(f"DTYPE_{name.upper()}"): dtype for name, dtype in TORCH_DTYPES.items()
}
TORCH_TO_DTYPE: dict[torch.dtype, int] = {v: k for k, v in DTYPE_TO_TORCH.items()}
ITEMSIZE: dict[torch.dtype, int] = {dtype: dtype.itemsize for dtype in DTYPE_TO_TORCH.values()}
FLOAT_DTYPES = tuple(COMPUTE_DTYPES.values())
# Bounds on a wire tensor's shape, far above any real request (a 2 GiB message holds at most
# 2**31 bytes) and below what torch can index.
MAX_DIMS = 32
MAX_ELEMENTS = 2**40


def dtype_name(dtype: int | torch.dtype) -> str:
    """Human name of a wire or torch dtype, as used in error messages ("float32")."""
    if isinstance(dtype, torch.dtype):
        return torch_dtype_name(dtype)
    known = DTYPE_TO_TORCH.get(dtype)
    return torch_dtype_name(known) if known is not None else f"unspecified ({dtype})"


def decode_tensor(message: pb.Tensor, name: str) -> torch.Tensor:
    """Wrap a wire tensor's bytes as a torch tensor (no copy), checking dtype, shape and length."""
    dtype = DTYPE_TO_TORCH.get(message.dtype)
    if dtype is None:
        raise InvalidArgument(f"{name}: dtype is {dtype_name(message.dtype)}; set a DType")
    shape = tuple(message.shape)
    if len(shape) > MAX_DIMS:
        raise InvalidArgument(
            f"{name}: shape has {len(shape)} dimensions, expected at most {MAX_DIMS}"
        )
    if any(size < 0 for size in shape):
        raise InvalidArgument(f"{name}: shape {list(shape)} has a negative dimension")
    if math.prod(size for size in shape if size) > MAX_ELEMENTS:
        # Also for tensors with a 0 dimension: torch cannot even describe [0, 2**62, 4].
        raise InvalidArgument(
            f"{name}: shape {list(shape)} describes more than {MAX_ELEMENTS} elements"
        )
    itemsize = ITEMSIZE[dtype]
    expected = math.prod(shape) * itemsize
    raw = message.raw_data  # upb copies on every access: read it once
    if len(raw) != expected:
        raise InvalidArgument(
            f"{name}: raw_data has {len(raw)} bytes, expected {expected} "
            f"(shape {list(shape)} × {itemsize} bytes of {dtype_name(dtype)})"
        )
    if expected == 0:
        return torch.empty(shape, dtype=dtype)
    if dtype is torch.bool:
        if raw.translate(None, b"\x00\x01"):  # a byte other than 0 or 1 is left (C speed)
            raise InvalidArgument(f"{name}: bool tensor has bytes other than 0 and 1")
        return torch.frombuffer(raw, dtype=torch.bool).view(shape)
    return torch.frombuffer(raw, dtype=dtype).view(shape)


def encode_tensor(tensor: torch.Tensor) -> pb.Tensor:
    """Serialise a tensor (any device) to the wire form: one copy into the message's bytes."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    dtype = TORCH_TO_DTYPE[tensor.dtype]
    if tensor.dtype is torch.bfloat16:  # numpy has no bfloat16; its bits are an int16
        tensor = tensor.view(torch.int16)
    raw = tensor.contiguous().numpy().tobytes()
    return pb.Tensor(dtype=dtype, shape=list(tensor.shape), raw_data=raw)


def _shape_text(shape: tuple[int, ...] | torch.Size) -> str:
    return str(list(shape))


def _expect(tensor: torch.Tensor, name: str, shape: tuple[int, ...], what: str = "") -> None:
    if tuple(tensor.shape) != shape:
        because = f" ({what})" if what else ""
        raise InvalidArgument(
            f"{name}: expected shape {_shape_text(shape)}{because}, got {_shape_text(tensor.shape)}"
        )


def _expect_dtype(tensor: torch.Tensor, name: str, dtypes: tuple[torch.dtype, ...]) -> None:
    if tensor.dtype not in dtypes:
        wanted = " or ".join(dtype_name(d) for d in dtypes)
        raise InvalidArgument(f"{name}: expected dtype {wanted}, got {dtype_name(tensor.dtype)}")


def decode_per_step(
    message: pb.Tensor,
    name: str,
    steps: tuple[int, ...],
    dtype: torch.dtype,
    finite: bool = False,
    layout: AgentLayout | None = None,
    where: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decode a per-step floating tensor that must have the reward's [*B, T] and dtype (and,
    with `finite`, no NaN/Inf: for tensors every element of which enters the result). With
    agents, `layout` turns its wire [*B, T, n] into the runtime's [*B, n, T]. `where` (a mask)
    limits the finiteness check to valid steps."""
    tensor = decode_tensor(message, name)
    if layout is not None:
        tensor = layout.values(tensor, name)
    if tensor.dtype != dtype:
        raise InvalidArgument(
            f"{name}: expected dtype {dtype_name(dtype)} (the reward's), "
            f"got {dtype_name(tensor.dtype)}"
        )
    _expect(tensor, name, steps, "the reward's [*B, T]")
    bad = ~torch.isfinite(tensor) if finite and not all_finite(tensor) else None
    if bad is not None and where is not None:
        bad &= where
    if bad is not None and bool(bad.any()):
        at = [int(i) for i in bad.nonzero()[0]]
        raise InvalidArgument(f"{name}: expected finite values, got NaN/Inf at {at}")
    return tensor


def _optional(message: pb.Trajectory, name: str) -> torch.Tensor | None:
    if not message.HasField(name):
        return None
    return decode_tensor(getattr(message, name), f"trajectory.{name}")


def decode_trajectory(message: pb.Trajectory) -> Trajectory:
    """Decode and cross-check a Trajectory: every per-step tensor has the reward's [*B, T].

    With `n_agents` the tensors are moved into the agent-major layout (`wire/agents.py`); the
    mask and composite heads are read by `wire/structured.py`.
    """
    if not message.HasField("reward"):
        raise InvalidArgument("trajectory.reward: required, [*B, T] float32 or float64")
    reward = decode_tensor(message.reward, "trajectory.reward")
    _expect_dtype(reward, "trajectory.reward", FLOAT_DTYPES)
    if reward.dim() < 1:
        raise InvalidArgument(
            f"trajectory.reward: expected shape [*B, T] with at least a time dimension, "
            f"got {_shape_text(reward.shape)}"
        )
    layout = AgentLayout.of(message.n_agents, reward)
    reward = layout.values(reward, "trajectory.reward")
    steps = tuple(reward.shape)
    if not message.HasField("done"):
        raise InvalidArgument(f"trajectory.done: required, bool of shape {_shape_text(steps)}")
    done = decode_tensor(message.done, "trajectory.done")
    _expect_dtype(done, "trajectory.done", (torch.bool,))
    shared_done = layout.n and tuple(done.shape) == layout.wire_steps
    done = layout.flags(done, "trajectory.done")
    _expect(done, "trajectory.done", steps, "the reward's [*B, T]")
    terminated = _optional(message, "terminated")
    if terminated is None:
        terminated = done
    else:
        _expect_dtype(terminated, "trajectory.terminated", (torch.bool,))
        terminated = layout.flags(terminated, "trajectory.terminated")
        _expect(terminated, "trajectory.terminated", steps, "the reward's [*B, T]")

    if reward.numel() == 0:
        raise InvalidArgument(
            f"trajectory.reward: expected at least one step, got shape {list(steps)}"
        )

    mask = decode_mask(message, steps, layout, decode_tensor)
    per_step = {
        name: decode_per_step(
            getattr(message, name),
            f"trajectory.{name}",
            steps,
            reward.dtype,
            # The behaviour policy's log-probability of an action it took is finite.
            finite=name == "sample_log_prob",
            layout=layout,
            where=mask,
        )
        if message.HasField(name)
        else None
        for name in ("state_value", "next_state_value", "sample_log_prob", "log_prob")
    }
    if (per_step["state_value"] is None) != (per_step["next_state_value"] is None):
        raise InvalidArgument(
            "trajectory.state_value / trajectory.next_state_value: send both or neither "
            "(neither = the server's value network computes them)"
        )
    action = _optional(message, "action")
    if action is not None:
        action = layout.leading(action, "trajectory.action")
    if action is not None and tuple(action.shape[: len(steps)]) != steps:
        raise InvalidArgument(
            f"trajectory.action: expected shape [*B, T, *action_shape] with [*B, T] = "
            f"{_shape_text(steps)}, got {_shape_text(action.shape)}"
        )
    form = message.form
    if form not in (
        pb.TRAJECTORY_FORM_UNSPECIFIED,
        pb.TRAJECTORY_FORM_FULL,
        pb.TRAJECTORY_FORM_COMPACT,
    ):
        raise InvalidArgument(f"trajectory.form: unknown value {form}")
    compact = form == pb.TRAJECTORY_FORM_COMPACT
    observation = _decode_map(message.observation, "trajectory.observation")
    next_observation = _decode_map(message.next_observation, "trajectory.next_observation")
    if layout.n:
        if compact and not shared_done:
            raise InvalidArgument(
                "trajectory.done: the compact form with agents needs done shared by the agents "
                f"({_shape_text(layout.wire_steps)}); send per-agent flags in the full form"
            )
        observation = {
            key: layout.leading(x, f"trajectory.observation[{key!r}]", int(compact))
            for key, x in observation.items()
        }
        if compact:
            truncated = (done & ~terminated).select(-2, 0)
            next_observation = {
                key: layout.compact_next(x, f"trajectory.next_observation[{key!r}]", truncated)
                for key, x in next_observation.items()
            }
        else:
            next_observation = {
                key: layout.leading(x, f"trajectory.next_observation[{key!r}]")
                for key, x in next_observation.items()
            }
    trajectory = Trajectory(
        reward=reward,
        done=done,
        terminated=terminated,
        compact=compact,
        observation=observation,
        next_observation=next_observation,
        action=action,
        n_agents=layout.n,
        mask=mask,
        **per_step,
    )
    return decode_structure(message, trajectory, layout, decode_tensor, decode_per_step)


def _decode_map(entries: Mapping[str, pb.Tensor], name: str) -> dict[str, torch.Tensor]:
    return {key: decode_tensor(entries[key], f"{name}[{key!r}]") for key in sorted(entries)}
