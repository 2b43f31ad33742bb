"""Parameter streams: reassemble GetParameters chunks, split tensors into SetParameters chunks.

Pure (no I/O), shared by the sync and the asyncio client. The contract (the proto's NamedTensor):
a tensor travels as one or more flat pieces of its dtype, in order, each with the offset of its
first element in the flattened tensor, covering the whole tensor exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import numpy as np

from advantage_client._codec import (
    _NUMPY_OF,
    WireArray,
    _checked_array,
    dtype_name,
    is_tensordict,
    to_wire,
)
from advantage_client._pb.advantage.v1 import advantage_pb2 as pb
from advantage_client.types import Parameters

__all__ = [
    "MAX_CHUNK_BYTES",
    "ParameterAssembler",
    "parameters_request",
    "set_parameters_stream",
    "strip_prefix",
]

#: Default (and, for GetParameters, the server's maximum) raw bytes per chunk: 1 MiB.
MAX_CHUNK_BYTES = 1 << 20

As = Literal["numpy", "torch"]


def _check_chunk_bytes(max_chunk_bytes: Any, *, zero_ok: bool) -> int:
    if not isinstance(max_chunk_bytes, (int, np.integer)) or isinstance(max_chunk_bytes, bool):
        raise TypeError(f"max_chunk_bytes must be an int, got {type(max_chunk_bytes).__name__}")
    if max_chunk_bytes < 0 or (max_chunk_bytes == 0 and not zero_ok):
        expected = "≥ 0 (0 = the server's default)" if zero_ok else "> 0"
        raise ValueError(f"max_chunk_bytes must be {expected}, got {max_chunk_bytes}")
    return int(max_chunk_bytes)


def _check_model(model: Any) -> str:
    if not isinstance(model, str):
        raise TypeError(f"model must be a str, got {type(model).__name__}")
    return model


# --------------------------------------------------------------------------------------------
# GetParameters
# --------------------------------------------------------------------------------------------


def parameters_request(
    model: str, prefixes: Iterable[str] | str, max_chunk_bytes: int, as_: str
) -> pb.GetParametersRequest:
    """Validate get_parameters' arguments and build the request."""
    if as_ not in ("numpy", "torch"):
        raise ValueError(f"as_ must be 'numpy' or 'torch', got {as_!r}")
    if isinstance(prefixes, str):  # one prefix, not its characters
        prefixes = (prefixes,)
    prefixes = tuple(prefixes)
    bad = [p for p in prefixes if not isinstance(p, str)]
    if bad:
        raise TypeError(f"prefixes must be strings, got {bad!r}")
    return pb.GetParametersRequest(
        model_name=_check_model(model),
        max_chunk_bytes=_check_chunk_bytes(max_chunk_bytes, zero_ok=True),
        prefixes=prefixes,
    )


class _Slot:
    """One parameter being reassembled: its shape, dtype and a flat buffer filled in order."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: int) -> None:
        if any(s < 0 for s in shape):
            raise ValueError(f"parameter {name!r}: negative dimension in shape {list(shape)}")
        self.shape = shape
        self.dtype = dtype
        self.flat = np.empty(math.prod(shape), dtype=_NUMPY_OF[dtype])
        self.position = 0


class ParameterAssembler:
    """Feed it the GetParameters chunks in order; `result()` checks coverage and returns them.

    Checks (a malformed stream raises ValueError naming the parameter): one parameter version
    and one model across chunks; per name, one shape and dtype, flat pieces whose offsets follow
    each other, covering the tensor exactly once.
    """

    def __init__(self, as_: As = "numpy", device: Any = None) -> None:
        self._as = as_
        self._device = device
        self._slots: dict[str, _Slot] = {}
        self._version: int | None = None
        self._model: str | None = None
        self._chunks = 0

    def add(self, chunk: pb.ParameterChunk) -> None:
        """Take one chunk."""
        index = self._chunks
        self._chunks += 1
        if not chunk.HasField("parameter_version"):
            raise ValueError(f"chunk {index}: no parameter_version")
        if self._version is None:
            self._version, self._model = chunk.parameter_version, chunk.model_name
        elif chunk.parameter_version != self._version:
            raise ValueError(
                f"chunk {index}: parameter_version {chunk.parameter_version}, but the stream "
                f"began at {self._version} (every chunk must carry the same version)"
            )
        elif chunk.model_name and chunk.model_name != self._model:
            raise ValueError(
                f"chunk {index}: model_name {chunk.model_name!r}, expected {self._model!r}"
            )
        for named in chunk.tensors:
            self._add_piece(named)

    def _add_piece(self, named: pb.NamedTensor) -> None:
        name = named.name
        where = f"parameter {name!r}"
        shape = tuple(int(s) for s in named.shape)
        slot = self._slots.get(name)
        if slot is None:
            if named.data.dtype not in _NUMPY_OF:
                raise ValueError(f"{where}: unsupported dtype {named.data.dtype}")
            slot = self._slots[name] = _Slot(name, shape, named.data.dtype)
        if shape != slot.shape:
            raise ValueError(
                f"{where}: a piece says shape {list(shape)}, an earlier one {list(slot.shape)}"
            )
        if named.data.dtype != slot.dtype:
            raise ValueError(
                f"{where}: a piece has dtype {dtype_name(named.data.dtype)}, an earlier one "
                f"{dtype_name(slot.dtype)}"
            )
        piece = _checked_array(named.data, where)
        if piece.ndim != 1:
            raise ValueError(f"{where}: pieces must be flat, got shape {list(piece.shape)}")
        if named.offset != slot.position:
            raise ValueError(
                f"{where}: piece at offset {named.offset}, expected {slot.position} (pieces must "
                "be in order, without gaps or overlaps)"
            )
        end = slot.position + piece.size
        if end > slot.flat.size:
            raise ValueError(
                f"{where}: pieces cover more than its {slot.flat.size} elements ({end})"
            )
        slot.flat[slot.position : end] = piece
        slot.position = end

    def result(self) -> Parameters:
        """(version, {name: array or tensor}) in the server's order; checks full coverage."""
        if self._version is None:
            raise ValueError("the parameter stream was empty (no chunk, no version)")
        short = {
            name: (slot.position, slot.flat.size)
            for name, slot in self._slots.items()
            if slot.position != slot.flat.size
        }
        if short:
            name, (got, expected) = next(iter(short.items()))
            raise ValueError(
                f"parameter {name!r}: pieces cover {got} of its {expected} elements"
                + (f" ({len(short)} parameters incomplete)" if len(short) > 1 else "")
            )
        tensors = {name: self._convert(slot) for name, slot in self._slots.items()}
        return Parameters(self._version, tensors)

    def _convert(self, slot: _Slot) -> Any:
        flat = slot.flat
        if self._as == "numpy":
            if slot.dtype == pb.DTYPE_BFLOAT16:  # numpy has no bfloat16: widen exactly
                flat = (flat.view("<u2").astype("<u4") << 16).view("<f4").astype(np.float32)
            return flat.reshape(slot.shape)
        import torch

        native = flat.astype(flat.dtype.newbyteorder("="), copy=False)
        out = torch.from_numpy(native)
        if slot.dtype == pb.DTYPE_BFLOAT16:
            out = out.view(torch.bfloat16)
        out = out.view(slot.shape)
        if self._device is not None and torch.device(self._device) != out.device:
            out = out.to(self._device)
        return out


def strip_prefix(tensors: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """{name without `prefix`: tensor} for the names that start with it (a state_dict)."""
    state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"the model has no parameters named {prefix!r}…")
    return state


# --------------------------------------------------------------------------------------------
# SetParameters
# --------------------------------------------------------------------------------------------


def _named_items(params: Any) -> list[tuple[str, Any]]:
    if is_tensordict(params):  # e.g. TensorDict.from_module(net): nested keys → "a.b"
        return [
            (".".join(k) if isinstance(k, tuple) else k, v)
            for k, v in params.items(include_nested=True, leaves_only=True)
        ]
    if not isinstance(params, Mapping):
        raise TypeError(
            "params must be a {name: array or tensor} mapping (e.g. module.state_dict()), got "
            f"{type(params).__name__}"
        )
    return list(params.items())


def _wire_parameters(params: Any, prefix: str) -> list[tuple[str, WireArray]]:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, got {type(prefix).__name__}")
    items = _named_items(params)
    if not items:
        raise ValueError("params is empty: nothing to set")
    wired = []
    for key, value in items:
        if not isinstance(key, str) or not (prefix + key):
            raise TypeError(f"parameter names must be non-empty strings, got {key!r}")
        name = prefix + key
        wired.append((name, to_wire(value, name=f"params[{name!r}]")))
    return wired


def _chunks(
    wired: list[tuple[str, WireArray]],
    model: str,
    expected_version: int | None,
    max_chunk_bytes: int,
) -> Iterator[pb.ParameterChunk]:
    chunk = pb.ParameterChunk(model_name=model)
    if expected_version is not None:
        chunk.parameter_version = expected_version
    used = 0
    for name, wire in wired:
        flat = wire.array.reshape(-1)
        step = max(max_chunk_bytes // wire.array.dtype.itemsize, 1)
        for offset in range(0, max(flat.size, 1), step):
            piece = flat[offset : offset + step]
            if chunk.tensors and used + piece.nbytes > max_chunk_bytes:
                yield chunk
                chunk, used = pb.ParameterChunk(), 0
            chunk.tensors.append(
                pb.NamedTensor(
                    name=name,
                    shape=wire.shape,
                    offset=offset,
                    data=pb.Tensor(dtype=wire.dtype, shape=[piece.size], raw_data=piece.tobytes()),
                )
            )
            used += piece.nbytes
    yield chunk


def set_parameters_stream(
    params: Any,
    *,
    prefix: str = "",
    model: str = "",
    expected_version: int | None = None,
    max_chunk_bytes: int = MAX_CHUNK_BYTES,
) -> Iterator[pb.ParameterChunk]:
    """Validate set_parameters' arguments now; return the (lazy) chunk stream.

    Each chunk holds at most `max_chunk_bytes` of raw data (or one element, if larger); tensors
    larger than that are split into flat pieces. The first chunk names the model and, when
    given, the version the model must be at.
    """
    model = _check_model(model)
    limit = _check_chunk_bytes(max_chunk_bytes, zero_ok=False)
    if expected_version is not None and (
        not isinstance(expected_version, (int, np.integer)) or isinstance(expected_version, bool)
    ):
        raise TypeError(f"expected_version must be an int, got {type(expected_version).__name__}")
    wired = _wire_parameters(params, prefix)
    version = None if expected_version is None else int(expected_version)
    return _chunks(wired, model, version, limit)
