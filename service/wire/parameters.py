"""Parameters on the wire: GetParameters chunks out, a SetParameters stream in (assembled and
checked here, committed by `service.runtime.parameters`)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

import torch

from service.errors import InvalidArgument, ResourceExhausted
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime.call import CallState
from service.runtime.parameters import (
    named_tensors,
    parameter_bytes,
    replace_parameters,
    snapshot,
)
from service.wire.codec import decode_tensor, dtype_name, encode_tensor
from service.wire.malformed import MalformedRequest
from service.wire.unknown import refuse_unknown_fields

MAX_CHUNK_BYTES = 1 << 20


def parameter_chunks(
    model: Model, max_chunk_bytes: int = 0, prefixes: Iterable[str] = ()
) -> Iterator[pb.ParameterChunk]:
    """Chunks of at most `max_chunk_bytes` of raw data, all of one consistent version."""
    limit = MAX_CHUNK_BYTES if max_chunk_bytes <= 0 else min(max_chunk_bytes, MAX_CHUNK_BYTES)
    version, tensors = snapshot(model, tuple(prefixes))
    chunk = pb.ParameterChunk(model_name=model.name, parameter_version=version)
    used = 0
    for name, tensor in tensors.items():
        flat = tensor.reshape(-1)
        per_element = max(flat.element_size(), 1)
        step = max(limit // per_element, 1)
        for offset in range(0, max(flat.numel(), 1), step):
            piece = flat[offset : offset + step]
            size = piece.numel() * per_element
            if used and used + size > limit:
                yield chunk
                chunk = pb.ParameterChunk(model_name=model.name, parameter_version=version)
                used = 0
            chunk.tensors.append(
                pb.NamedTensor(
                    name=name, shape=list(tensor.shape), offset=offset, data=encode_tensor(piece)
                )
            )
            used += size
    yield chunk


async def collect_parameter_stream(
    stream: AsyncIterator[pb.ParameterChunk], resolve: Callable[[str], Model]
) -> list[pb.ParameterChunk]:
    """Receive a SetParameters stream, refusing it once it outgrows twice the model's size."""
    chunks: list[pb.ParameterChunk] = []
    received, limit = 0, 0
    async for chunk in stream:
        if isinstance(chunk, MalformedRequest):
            raise InvalidArgument(f"chunk {len(chunks)}: {chunk.describe()}")
        refuse_unknown_fields(chunk, f"chunk {len(chunks)}")
        if not chunks:
            model = resolve(chunk.model_name)
            limit = 2 * parameter_bytes(model) + MAX_CHUNK_BYTES
        received += chunk.ByteSize()
        if received > limit:
            raise ResourceExhausted(
                f"SetParameters: the stream passed {limit} bytes (twice the size of model "
                f"{model.name!r}'s parameters, plus 1 MiB); send each tensor once"
            )
        chunks.append(chunk)
    return chunks


def _assemble(chunks: Iterable[pb.ParameterChunk]) -> tuple[str, int | None, dict]:
    """Join the stream's pieces per name; check the model name and the pieces' coverage."""
    model_name, expected_version = "", None
    pieces: dict[str, list[pb.NamedTensor]] = {}
    for index, chunk in enumerate(chunks):
        if index == 0:
            model_name = chunk.model_name
            if chunk.HasField("parameter_version"):
                expected_version = chunk.parameter_version
        elif chunk.model_name and chunk.model_name != model_name:
            raise InvalidArgument(
                f"chunk {index}.model_name: expected {model_name!r} (the first chunk's), "
                f"got {chunk.model_name!r}"
            )
        for named in chunk.tensors:
            pieces.setdefault(named.name, []).append(named)
    return model_name, expected_version, pieces


def _join(name: str, parts: list[pb.NamedTensor], target: torch.Tensor) -> torch.Tensor:
    shape = tuple(parts[0].shape)
    if any(tuple(part.shape) != shape for part in parts) or shape != tuple(target.shape):
        raise InvalidArgument(
            f"tensors[{name!r}].shape: expected {list(target.shape)}, got {list(shape)}"
        )
    flat = []
    position = 0
    for part in parts:
        data = decode_tensor(part.data, f"tensors[{name!r}].data")
        if data.dtype != target.dtype:
            raise InvalidArgument(
                f"tensors[{name!r}].data: expected dtype {dtype_name(target.dtype)}, "
                f"got {dtype_name(data.dtype)}"
            )
        if part.offset != position or data.dim() != 1:
            raise InvalidArgument(
                f"tensors[{name!r}]: pieces must be flat and contiguous; expected offset "
                f"{position}, got {part.offset} (piece shape {list(data.shape)})"
            )
        flat.append(data)
        position += data.numel()
    if position != math.prod(shape):
        raise InvalidArgument(
            f"tensors[{name!r}]: pieces cover {position} elements, expected {math.prod(shape)}"
        )
    return torch.cat(flat).view(shape) if len(flat) > 1 else flat[0].view(shape)


def set_parameters(
    resolve: Callable[[str], Model],
    chunks: Iterable[pb.ParameterChunk],
    call: CallState | None = None,
) -> pb.SetParametersResponse:
    """Assemble and check the whole stream, then replace the model's tensors all at once."""
    model_name, expected_version, pieces = _assemble(chunks)
    model: Model = resolve(model_name)
    if not pieces:
        raise InvalidArgument("tensors: the stream carried no tensors")
    current = named_tensors(model)  # names, shapes and dtypes never change
    unknown = sorted(set(pieces) - set(current))
    if unknown:
        raise InvalidArgument(
            f"tensors: unknown names {unknown[:5]}; model {model.name!r} has e.g. "
            f"{sorted(current)[:5]}"
        )
    staged = {name: _join(name, parts, current[name]) for name, parts in pieces.items()}
    version = replace_parameters(model, staged, expected_version, call)
    return pb.SetParametersResponse(
        model_name=model.name, parameter_version=version, tensors_updated=len(staged)
    )
