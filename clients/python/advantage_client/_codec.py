"""Arrays and tensors ↔ the wire `Tensor` (dtype + shape + raw little-endian row-major bytes).

numpy is the pivot: every input is first turned into a *wire array* — a C-contiguous numpy array
whose bytes are exactly what goes on the wire — plus its `DType`. torch tensors are converted only
when the caller passes one, so importing this module never imports torch.

bfloat16 has no numpy dtype: a torch bfloat16 tensor travels as its int16 bit pattern, and on the
way back a bfloat16 result becomes a torch bfloat16 tensor (torch output) or is widened exactly to
float32 (numpy output).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from advantage_client._pb.advantage.v1 import advantage_pb2 as pb

if TYPE_CHECKING:
    import torch

__all__ = [
    "WireArray",
    "decode_numpy",
    "decode_torch",
    "dtype_name",
    "encode",
    "is_tensordict",
    "is_torch_tensor",
    "to_wire",
]

# Wire dtype → little-endian numpy dtype of its bytes (bfloat16: its int16 bit pattern).
_NUMPY_OF: dict[int, np.dtype] = {
    pb.DTYPE_FLOAT32: np.dtype("<f4"),
    pb.DTYPE_FLOAT64: np.dtype("<f8"),
    pb.DTYPE_BOOL: np.dtype("?"),
    pb.DTYPE_INT64: np.dtype("<i8"),
    pb.DTYPE_INT32: np.dtype("<i4"),
    pb.DTYPE_FLOAT16: np.dtype("<f2"),
    pb.DTYPE_BFLOAT16: np.dtype("<i2"),
    pb.DTYPE_UINT8: np.dtype("u1"),
}
# numpy dtype (native or not; compared by kind and size) → wire dtype. bfloat16 is torch-only.
_WIRE_OF: dict[str, int] = {
    "f4": pb.DTYPE_FLOAT32,
    "f8": pb.DTYPE_FLOAT64,
    "b1": pb.DTYPE_BOOL,
    "i8": pb.DTYPE_INT64,
    "i4": pb.DTYPE_INT32,
    "f2": pb.DTYPE_FLOAT16,
    "u1": pb.DTYPE_UINT8,
}
_NAMES: dict[int, str] = {
    pb.DTYPE_FLOAT32: "float32",
    pb.DTYPE_FLOAT64: "float64",
    pb.DTYPE_BOOL: "bool",
    pb.DTYPE_INT64: "int64",
    pb.DTYPE_INT32: "int32",
    pb.DTYPE_FLOAT16: "float16",
    pb.DTYPE_BFLOAT16: "bfloat16",
    pb.DTYPE_UINT8: "uint8",
}
_SUPPORTED = ", ".join(_NAMES.values())


@dataclass(frozen=True)
class WireArray:
    """A C-contiguous little-endian numpy array holding exactly the wire bytes, and its dtype."""

    array: np.ndarray
    dtype: int  # a pb.DType value

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the tensor."""
        return tuple(self.array.shape)


def dtype_name(dtype: int) -> str:
    """Lower-case name of a wire dtype (``"float32"``); ``"unspecified"`` for unknown values."""
    return _NAMES.get(dtype, "unspecified")


def is_torch_tensor(x: object) -> bool:
    """True when `x` is a torch.Tensor; never imports torch (no torch loaded → no tensor)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_tensordict(x: object) -> bool:
    """True when `x` is a TensorDict; never imports tensordict."""
    tensordict = sys.modules.get("tensordict")
    return tensordict is not None and isinstance(x, tensordict.TensorDictBase)


def to_wire(x: Any, *, name: str = "tensor") -> WireArray:
    """Turn a numpy array, torch tensor, Python scalar or nested list into a wire array.

    Raises TypeError (naming `name`) for element types the contract has no DType for.
    """
    if isinstance(x, WireArray):
        return x
    if is_torch_tensor(x):
        return _torch_to_wire(x, name)
    arr = np.asarray(x)
    wire = _WIRE_OF.get(f"{arr.dtype.kind}{arr.dtype.itemsize}")
    if wire is None:
        raise TypeError(f"{name}: dtype {arr.dtype} is not supported (supported: {_SUPPORTED})")
    return WireArray(np.asarray(arr, dtype=_NUMPY_OF[wire], order="C"), wire)


def _torch_to_wire(x: torch.Tensor, name: str) -> WireArray:
    import torch

    t = x.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype == torch.bfloat16:
        return WireArray(
            np.asarray(t.contiguous().view(torch.int16).numpy(), dtype="<i2", order="C"),
            pb.DTYPE_BFLOAT16,
        )
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    try:
        arr = t.numpy()
    except TypeError as exc:
        msg = f"{name}: dtype {x.dtype} is not supported (supported: {_SUPPORTED})"
        raise TypeError(msg) from exc
    return to_wire(arr, name=name)


def encode(x: Any, *, name: str = "tensor") -> pb.Tensor:
    """Encode `x` (anything `to_wire` takes) as a wire Tensor: dtype, shape, raw bytes."""
    w = to_wire(x, name=name)
    return pb.Tensor(dtype=w.dtype, shape=w.array.shape, raw_data=w.array.tobytes())


def _checked_array(t: pb.Tensor, name: str) -> np.ndarray:
    """View `t`'s bytes as a read-only little-endian numpy array of its shape (no copy)."""
    dt = _NUMPY_OF.get(t.dtype)
    if dt is None:
        raise ValueError(f"{name}: unsupported dtype {t.dtype} in the response")
    shape = tuple(int(s) for s in t.shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"{name}: negative dimension in shape {list(shape)}")
    expected = math.prod(shape) * dt.itemsize
    if len(t.raw_data) != expected:
        raise ValueError(
            f"{name}: raw_data holds {len(t.raw_data)} bytes, expected {expected} "
            f"(shape {list(shape)} × {dt.itemsize}-byte {dtype_name(t.dtype)})"
        )
    return np.frombuffer(t.raw_data, dtype=dt).reshape(shape)


def decode_numpy(t: pb.Tensor, *, name: str = "tensor") -> np.ndarray:
    """Decode a wire Tensor into a numpy array.

    Zero copy: the result is a **read-only** view of the message's bytes (call `.copy()` to get a
    writable array). bfloat16 is the exception: numpy has no such dtype, so it is widened exactly
    to a (writable) float32 array.
    """
    arr = _checked_array(t, name)
    if t.dtype == pb.DTYPE_BFLOAT16:
        return (arr.view("<u2").astype("<u4") << 16).view("<f4").astype(np.float32)
    return arr


def decode_torch(t: pb.Tensor, *, name: str = "tensor", device: Any = None) -> torch.Tensor:
    """Decode a wire Tensor into a torch tensor (one copy, so it is writable), on `device`."""
    import torch

    arr = _checked_array(t, name)
    native = arr.astype(arr.dtype.newbyteorder("="), copy=True)  # writable, native byte order
    out = torch.from_numpy(native)
    if t.dtype == pb.DTYPE_BFLOAT16:
        out = out.view(torch.bfloat16)
    if device is not None and torch.device(device) != out.device:
        out = out.to(device)
    return out
