"""Choosing between the compiled CPU kernel and the pure-torch path, and the views each needs.

The kernel runs when it can (CPU, float32/float64, numba importable, no gradient needed); the
torch path runs everywhere else: CUDA, autograd, other float dtypes. Tests and the benchmark force
either with the private ``_backend`` keyword of the public functions.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from service.errors import ArgumentError
from service.estimators import _kernels, threads
from service.estimators._checks import Coef, Layout

__all__ = [
    "Backend",
    "check_out",
    "choose",
    "coef_rows",
    "coef_step",
    "coef_time_major",
    "deliver",
    "from_time_major",
    "grad_inputs",
    "new_rows",
    "one",
    "one_minus",
    "parallel",
    "rows",
    "scalar",
    "scalar_fast_path",
    "time_major",
    "wants_grad",
]

Backend = Literal["auto", "numba", "torch"]
#: Caller-provided output tensors (``out=``): the pair the estimator returns, written in place.
Out = tuple[Tensor, Tensor] | None

_KERNEL_DTYPES = (torch.float32, torch.float64)


def choose(requested: Backend, layout: Layout, needs_grad: bool) -> Literal["numba", "torch"]:
    kernel_ok = (
        _kernels.AVAILABLE
        and layout.device.type == "cpu"
        and layout.dtype in _KERNEL_DTYPES
        and not needs_grad
    )
    if requested == "auto":
        return "numba" if kernel_ok else "torch"
    if requested == "numba" and not kernel_ok:
        raise ArgumentError(
            "_backend",
            f"expected a CPU float32/float64 call without autograd and numba installed "
            f"for 'numba', got device={layout.device}, dtype={layout.dtype}, "
            f"needs_grad={needs_grad}, numba available={_kernels.AVAILABLE}",
        )
    if requested not in ("numba", "torch"):
        raise ArgumentError("_backend", f"expected 'auto', 'numba' or 'torch', got {requested!r}")
    return requested


def wants_grad(differentiable: bool, *xs: Tensor) -> bool:
    """``differentiable=True``, autograd on, and a gradient to deliver to one of ``xs``."""
    return differentiable and torch.is_grad_enabled() and any(x.requires_grad for x in xs)


def grad_inputs(layout: Layout, needs_grad: bool, *xs: Tensor) -> list[Tensor]:
    """``xs`` in the computation dtype (no copy when they have it), detached unless gradients
    must flow into them. Upcasting is exact, so promoted inputs give TorchRL's numbers."""
    dtype = layout.dtype
    out = [x if needs_grad else x.detach() for x in xs]
    # (a dtype comparison costs a tenth of a no-op .to(); this runs on every call)
    return [x if x.dtype == dtype else x.to(dtype) for x in out]


def parallel(layout: Layout) -> bool:
    """Whether to launch the parallel build of a kernel, with its thread count set for the
    calling thread; the decision is ``service.estimators.threads``' policy."""
    elements = layout.n_rows * layout.n_steps * layout.n_feat
    n = threads.kernel_threads(layout.n_rows, elements)
    if n > 1:
        _kernels.use_threads(n)
    return n > 1


def rows(x: Tensor, layout: Layout) -> np.ndarray:
    """A ``[n_rows, n_steps, n_feat]`` numpy view (a copy only for non-contiguous input)."""
    x = x.detach()
    array = (x if x.is_contiguous() else x.contiguous()).numpy()
    # numpy's reshape of a contiguous array is a view, and cheaper than torch's per call.
    return array.reshape(layout.n_rows, layout.n_steps, layout.n_feat)


def coef_rows(c: Coef, layout: Layout) -> np.ndarray:
    """A scalar becomes a zero-stride broadcast: no per-step copy is ever materialised (nor for
    an expanded tensor, whenever its strides allow the view)."""
    shape = (layout.n_rows, layout.n_steps, layout.n_feat)
    if isinstance(c, Tensor):
        return c.detach().reshape(shape).numpy()
    np_dtype = np.float32 if layout.dtype == torch.float32 else np.float64
    return np.broadcast_to(np.asarray(c, dtype=np_dtype), shape)


def new_rows(layout: Layout, out: Tensor | None = None) -> tuple[Tensor, np.ndarray]:
    """An output tensor in the caller's layout (``out`` when given, already checked by
    ``check_out``) and its ``[n_rows, n_steps, n_feat]`` view."""
    if out is None:
        out = torch.empty(layout.shape, dtype=layout.dtype)
    return out, out.view(layout.n_rows, layout.n_steps, layout.n_feat).numpy()


def check_out(
    out: Out, layout: Layout, needs_grad: bool, inputs: tuple[Tensor | None, ...]
) -> None:
    """``out`` is None or two distinct contiguous tensors of the result's shape, dtype and device
    that share no memory with the inputs (the kernels read later steps after writing earlier
    ones) and need no gradient (as for torch's own ``out=``)."""
    if out is None:
        return
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise ArgumentError("out", f"expected a pair of tensors, got {type(out).__name__}")
    expected = f"shape {tuple(layout.shape)}, dtype {layout.dtype}, device {layout.device}"
    for name, o in zip(("out[0]", "out[1]"), out, strict=True):
        if not isinstance(o, Tensor):
            raise ArgumentError(name, f"expected a tensor, got {type(o).__name__}")
        if o.shape != layout.shape or o.dtype != layout.dtype or o.device != layout.device:
            raise ArgumentError(
                name, f"expected {expected}, got shape {tuple(o.shape)}, dtype {o.dtype}, "
                f"device {o.device}"
            )  # fmt: skip
        if not o.is_contiguous():
            raise ArgumentError(name, "expected a contiguous tensor, got a strided view")
        if needs_grad or o.requires_grad:
            raise ArgumentError(name, "expected no autograd: out= tensors cannot carry gradients")
    storages = [o.untyped_storage().data_ptr() for o in out]
    if storages[0] == storages[1]:
        raise ArgumentError("out", "expected two tensors with separate memory, got shared memory")
    for x in inputs:
        if x is not None and x.untyped_storage().data_ptr() in storages:
            raise ArgumentError("out", "expected memory of its own, got an input's memory")


def deliver(results: tuple[Tensor, Tensor], out: Out) -> tuple[Tensor, Tensor]:
    """``results``, copied into ``out`` when given and not written there already."""
    if out is None:
        return results
    for result, target in zip(results, out, strict=True):
        if result is not target:
            target.copy_(result)
    return out[0], out[1]


def scalar_fast_path(layout: Layout, *coefs: Coef) -> bool:
    """Whether the specialised kernels apply: one feature and every coefficient a Python float."""
    return layout.n_feat == 1 and not any(isinstance(c, Tensor) for c in coefs)


def scalar(c: float, layout: Layout) -> np.floating:
    """A Python float as the kernel dtype's scalar (rounded exactly as a broadcast array is)."""
    return np.float32(c) if layout.dtype == torch.float32 else np.float64(c)


def one(layout: Layout) -> np.floating:
    """The constant 1 in the kernel's dtype (a literal would promote float32 to float64)."""
    return np.float32(1) if layout.dtype == torch.float32 else np.float64(1)


def one_minus(c: float, layout: Layout) -> float:
    """1 − c formed in the data's dtype, as TorchRL does (it fills a tensor with c first)."""
    if layout.dtype in _KERNEL_DTYPES:
        return float(one(layout) - scalar(c, layout))
    return float(1 - torch.tensor(c, dtype=layout.dtype))


def time_major(x: Tensor, layout: Layout) -> Tensor:
    return x.movedim(layout.time_dim, 0)


def from_time_major(x: Tensor, layout: Layout) -> Tensor:
    return x.movedim(0, layout.time_dim)


def coef_time_major(c: Coef, layout: Layout) -> Tensor:
    """A 0-d tensor for a scalar (filled on device, no host sync) or the time-major view."""
    if isinstance(c, Tensor):
        return time_major(c, layout)
    return torch.full((), c, dtype=layout.dtype, device=layout.device)


def coef_step(c: Tensor, t: int) -> Tensor:
    return c if c.ndim == 0 else c[t]
