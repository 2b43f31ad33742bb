"""Test helpers: random trajectories and raw protobuf requests (no client library involved)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import torch

from service.pb.advantage.v1 import advantage_pb2 as pb
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc

NUMPY_DTYPES = {pb.DTYPE_FLOAT32: "<f4", pb.DTYPE_FLOAT64: "<f8", pb.DTYPE_BOOL: "|b1"}


def tensor(value: torch.Tensor) -> pb.Tensor:
    """Encode independently of service.wire.codec: dtype enum, shape, little-endian bytes."""
    dtypes = {
        torch.float32: pb.DTYPE_FLOAT32,
        torch.float64: pb.DTYPE_FLOAT64,
        torch.bool: pb.DTYPE_BOOL,
        torch.int64: pb.DTYPE_INT64,
    }
    array = value.detach().contiguous().numpy()
    return pb.Tensor(dtype=dtypes[value.dtype], shape=list(value.shape), raw_data=array.tobytes())


def array(message: pb.Tensor) -> torch.Tensor:
    """Decode a float32/float64 response tensor."""
    dtype = {pb.DTYPE_FLOAT32: torch.float32, pb.DTYPE_FLOAT64: torch.float64}[message.dtype]
    return torch.frombuffer(bytearray(message.raw_data), dtype=dtype).view(*message.shape)


@dataclass
class Batch:
    """A random trajectory batch in TorchRL's [*B, T] layout with 4-dim observations."""

    observation: torch.Tensor  # [*B, T, 4]
    next_observation: torch.Tensor  # [*B, T, 4], chained: next_observation[t] = observation[t+1]
    reward: torch.Tensor
    done: torch.Tensor
    terminated: torch.Tensor
    action: torch.Tensor  # [*B, T] int64 in {0, 1}
    sample_log_prob: torch.Tensor

    @property
    def truncated(self) -> torch.Tensor:
        return self.done & ~self.terminated


def random_batch(
    batch: tuple[int, ...] = (3,), steps: int = 16, seed: int = 0, dtype=torch.float32
) -> Batch:
    """Episodes that end (terminated or truncated) at random steps; observations chain within."""
    g = torch.Generator().manual_seed(seed)
    shape = (*batch, steps)
    chain = torch.randn(*batch, steps + 1, 4, generator=g)
    observation, next_observation = chain[..., :-1, :], chain[..., 1:, :].clone()
    done = torch.rand(shape, generator=g) < 0.15
    terminated = done & (torch.rand(shape, generator=g) < 0.5)
    # A truncated step's true next observation is not the next reset observation.
    next_observation[done] = torch.randn(int(done.sum()), 4, generator=g)
    return Batch(
        observation=observation.contiguous(),
        next_observation=next_observation,
        reward=torch.randn(shape, generator=g, dtype=dtype),
        done=done,
        terminated=terminated,
        action=torch.randint(0, 2, shape, generator=g),
        sample_log_prob=(torch.rand(shape, generator=g, dtype=dtype) * 0.9 + 0.05).log(),
    )


def full_trajectory(batch: Batch, **extra: torch.Tensor) -> pb.Trajectory:
    """The full form: observation and next_observation [*B, T, 4]."""
    trajectory = pb.Trajectory(
        reward=tensor(batch.reward),
        done=tensor(batch.done),
        terminated=tensor(batch.terminated),
        action=tensor(batch.action),
        sample_log_prob=tensor(batch.sample_log_prob),
        form=pb.TRAJECTORY_FORM_FULL,
        **{key: tensor(value) for key, value in extra.items()},
    )
    trajectory.observation["observation"].CopyFrom(tensor(batch.observation))
    trajectory.next_observation["observation"].CopyFrom(tensor(batch.next_observation))
    return trajectory


def compact_trajectory(batch: Batch) -> pb.Trajectory:
    """The compact form: observation [*B, T+1, 4], true next observations at truncated steps."""
    trajectory = full_trajectory(batch)
    last = batch.next_observation[..., -1:, :]
    trajectory.observation["observation"].CopyFrom(
        tensor(torch.cat([batch.observation, last], dim=-2))
    )
    trajectory.next_observation["observation"].CopyFrom(
        tensor(batch.next_observation[batch.truncated])
    )
    trajectory.form = pb.TRAJECTORY_FORM_COMPACT
    return trajectory


def stub(target: str) -> pb_grpc.AdvantageServiceStub:
    """A raw generated stub on a fresh channel."""
    return pb_grpc.AdvantageServiceStub(grpc.insecure_channel(target))


def rpc_error(call, request) -> grpc.RpcError:
    """Call and return the RpcError it must raise."""
    try:
        call(request, timeout=60)
    except grpc.RpcError as error:
        return error
    raise AssertionError("expected the call to fail")


def parameters(api, **request) -> tuple[int, dict[str, torch.Tensor]]:
    """Reassemble the GetParameters stream (independently of the server's code)."""
    flat: dict[str, list[torch.Tensor]] = {}
    shapes: dict[str, list[int]] = {}
    versions = set()
    for chunk in api.GetParameters(pb.GetParametersRequest(**request)):
        versions.add(chunk.parameter_version)
        for named in chunk.tensors:
            piece = torch.frombuffer(bytearray(named.data.raw_data), dtype=torch.float32)
            assert named.offset == sum(p.numel() for p in flat.get(named.name, []))
            flat.setdefault(named.name, []).append(piece)
            shapes[named.name] = list(named.shape)
    assert len(versions) == 1
    return versions.pop(), {k: torch.cat(v).view(shapes[k]) for k, v in flat.items()}
