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
from service.estimators._checks import DEFAULT_TIME_DIM, Coef, Layout

__all__ = [
    "Backend",
    "FastRows",
    "check_out",
    "choose",
    "coef_rows",
    "coef_step",
    "coef_time_major",
    "deliver",
    "fast_rows",
    "from_time_major",
    "grad_inputs",
    "new_rows",
    "one",
    "one_minus",
    "parallel",
    "rows",
    "scalar",
    "scalar_fast_path",
    "serial_exp",
    "time_major",
    "wants_grad",
]

Backend = Literal["auto", "numba", "torch"]
#: Caller-provided output tensors (``out=``): the pair the estimator returns, written in place.
Out = tuple[Tensor, Tensor] | None

_KERNEL_DTYPES = (torch.float32, torch.float64)


#: A small serial call's ``(n_rows, n_steps)``: see ``fast_rows``.
FastRows = tuple[int, int]


def fast_rows(
    time_dim: int, values: tuple[Tensor, ...], flags: tuple[Tensor, ...]
) -> FastRows | None:
    """``(n_rows, n_steps)`` when a call may take the small-call path, else None.

    The small-call path is the common case with nothing to normalise: plain CPU tensors of one
    float32/float64 dtype (flags bool), one shape, contiguous, no autograd, one feature
    (``[*B, T, 1]`` with the default or an explicit ``time_dim=-2``, or time last with
    ``time_dim=-1``), and work
    small enough for the serial kernel build (``threads``' policy). Every such input passes the
    full checks unchanged, so skipping them changes no result and no refusal: anything else
    returns None and takes the checked path, which raises exactly as before. Costs ~2 µs
    instead of the ~40 µs of normalising and viewing the inputs one by one.
    """
    if not _kernels.AVAILABLE:
        return None
    ref = values[0]
    if type(ref) is not Tensor:
        return None
    dtype = ref.dtype
    if dtype is not torch.float32 and dtype is not torch.float64:
        return None
    shape = ref.shape
    for x in values:
        if (
            type(x) is not Tensor
            or x.dtype is not dtype
            or x.shape != shape
            or not x.is_cpu
            or x.requires_grad
            or x.layout is not torch.strided
            or not x.is_contiguous()
        ):
            return None
    for x in flags:
        if (
            type(x) is not Tensor
            or x.dtype is not torch.bool
            or x.shape != shape
            or not x.is_cpu
            or x.layout is not torch.strided
            or not x.is_contiguous()
        ):
            return None
    ndim = len(shape)
    if time_dim is DEFAULT_TIME_DIM or (
        type(time_dim) is int and ndim >= 2 and time_dim in (-2, ndim - 2)
    ):
        # [*B, T, 1]: the default, or asked for explicitly (as the server does)
        if ndim < 2 or shape[-1] != 1:
            return None
        n_steps = shape[-2]
    elif type(time_dim) is int and ndim >= 1 and time_dim in (-1, ndim - 1):
        n_steps = shape[-1]
    else:
        return None
    elements = ref.numel()
    if n_steps == 0 or elements == 0:
        return None
    n_rows = elements // n_steps
    if threads.kernel_threads(n_rows, elements) != 1:
        return None
    return n_rows, n_steps


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


def serial_exp(log_pi: Tensor, log_mu: Tensor, layout: Layout) -> tuple[Tensor, float]:
    """``exp(log_pi − log_mu)`` by torch, in the calling thread, and the log-ratios' sum.

    For the serial kernel path (``threads`` point 4): the subtraction and the sum by numpy
    (single-threaded; a subtraction is exactly rounded, so the same numbers as torch's), the
    ``exp`` by torch on slices torch never splits across its pool. The sum is only a finiteness
    probe (see the callers).
    """
    ratio_np = np.subtract(rows(log_pi, layout), rows(log_mu, layout))
    total = float(ratio_np.sum())
    ratio = torch.from_numpy(ratio_np).view(-1)
    step = threads.TORCH_SERIAL_ELEMENTS
    for start in range(0, ratio.numel(), step):
        ratio[start : start + step].exp_()
    return ratio.view(layout.shape), total


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
