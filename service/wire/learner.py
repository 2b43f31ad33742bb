"""The learner's RPCs as a replica calls them (ListModels, WatchModels, GetParameters), with the
answers decoded into domain values, and the check that a replica holds the learner's models.

`service.replication.follower` drives these on its channel to the learner; staging a copy
(`stage`) is CPU work for a worker thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence

import grpc
import torch

from service.errors import InvalidArgument
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from service.runtime.parameters import named_tensors
from service.wire.models import model_info
from service.wire.parameters import _assemble, _join

# ModelInfo fields that must agree between a replica and its learner (not the version, which
# the copy brings, nor the device, which is each server's own).
_COMPARED = (
    "inputs",
    "has_value_network",
    "has_actor_network",
    "action",
    "defaults",
    "parameter_dtype",
)


class LearnerMismatch(Exception):
    """The replica's models are not the learner's (a different --model-repository): fatal."""


def _shown(info: pb.ModelInfo, name: str) -> str:
    value = getattr(info, name)
    if name == "inputs":
        return str([(s.name, list(s.shape), pb.DType.Name(s.dtype)) for s in value])
    if name == "parameter_dtype":
        return pb.DType.Name(value)
    if hasattr(value, "ListFields"):
        return "{" + ", ".join(f"{f.name}: {v}" for f, v in value.ListFields()) + "}"
    return str(value)


def compare_models(local: Iterable[Model], learner: Sequence[pb.ModelInfo]) -> None:
    """Raise `LearnerMismatch` naming the first difference between the replica's models and the
    learner's ListModels answer."""
    mine = {model.name: model_info(model) for model in local}
    theirs = {info.name: info for info in learner}
    if set(mine) != set(theirs):
        raise LearnerMismatch(
            f"the learner holds models {sorted(theirs)}, this replica {sorted(mine)}"
        )
    for name, info in mine.items():
        for field in _COMPARED:
            if getattr(info, field) != getattr(theirs[name], field):
                raise LearnerMismatch(
                    f"model {name!r}: {field} is {_shown(info, field)} here and "
                    f"{_shown(theirs[name], field)} on the learner"
                )


class LearnerStub:
    """The learner's RPCs on `channel`, each carrying `metadata` (the bearer token)."""

    def __init__(
        self, channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...] | None = None
    ) -> None:
        self._stub = pb_grpc.AdvantageServiceStub(channel)
        self._metadata = metadata

    async def list_models(self, timeout: float) -> list[pb.ModelInfo]:
        """ListModels."""
        reply = await self._stub.ListModels(
            pb.ListModelsRequest(), timeout=timeout, metadata=self._metadata
        )
        return list(reply.models)

    async def watch(self) -> AsyncIterator[tuple[str, int]]:
        """WatchModels for every model: (model name, version) as the learner announces them.
        Ends when the learner closes the stream (it is stopping)."""
        call = self._stub.WatchModels(pb.WatchModelsRequest(), metadata=self._metadata)
        try:
            async for message in call:
                yield message.model_name, message.parameter_version
        finally:
            call.cancel()

    async def parameters(self, model: Model, timeout: float) -> list[pb.ParameterChunk]:
        """GetParameters of `model`: the whole stream (one consistent version)."""
        call = self._stub.GetParameters(
            pb.GetParametersRequest(model_name=model.name), timeout=timeout, metadata=self._metadata
        )
        return [chunk async for chunk in call]


def stage(model: Model, chunks: Sequence[pb.ParameterChunk]) -> tuple[int, dict[str, torch.Tensor]]:
    """(version, every named tensor of `model` as a CPU tensor) from a GetParameters stream;
    `LearnerMismatch` when the learner's tensors are not this model's (names, shapes, dtypes)."""
    if not chunks:
        raise LearnerMismatch(f"model {model.name!r}: the learner sent no parameters")
    _, _, pieces = _assemble(chunks)
    version = chunks[0].parameter_version
    current = named_tensors(model)
    if set(pieces) != set(current):
        missing = sorted(set(current) - set(pieces))[:5]
        extra = sorted(set(pieces) - set(current))[:5]
        raise LearnerMismatch(
            f"model {model.name!r}: the learner's parameters differ from this replica's "
            f"(missing there: {missing}, unknown here: {extra})"
        )
    try:
        staged = {key: _join(key, parts, current[key]) for key, parts in pieces.items()}
    except InvalidArgument as error:
        raise LearnerMismatch(f"model {model.name!r}: {error.message}") from None
    return version, staged
