"""Input contracts shared by every estimator: shapes, dtypes, devices, coefficient ranges.

Torch broadcasts silently, and TorchRL's estimators accept inputs that give wrong answers without
a word (a ``[B, T]`` batch read as time, ``terminated`` without ``done``, NaN bootstraps). Every
public function calls these helpers first; each failure is a ``ValueError`` naming the argument
and showing what was expected and what was received.

Checks that need no data (shapes, dtypes, devices, Python scalars) always run. Checks that read
the data (finiteness, flag consistency, per-step coefficient ranges) run when ``validate=True``:
fused into the compiled kernel on the CPU path, or one host synchronisation on the torch path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

import torch
from torch import Tensor

from service.errors import ArgumentError

__all__ = [
    "DEFAULT_TIME_DIM",
    "NON_FINITE",
    "TERMINATED_NOT_DONE",
    "Coef",
    "Layout",
    "check_coef",
    "check_coef_ranges",
    "check_inputs",
    "check_threshold",
    "diagnose",
    "raise_if_flagged",
]

# Bits the kernels report when a data check fails. A bit only says *that* something is wrong;
# ``diagnose`` then finds which argument and where, and raises.
NON_FINITE = 1
TERMINATED_NOT_DONE = 2

# A per-step coefficient is either a Python float (already range-checked) or a tensor of the
# inputs' exact shape, dtype and device.
Coef = float | Tensor


class _DefaultTimeDim(int):
    """``-2`` that remembers it was not passed, so the ambiguous 2-D case can be refused."""

    def __repr__(self) -> str:
        return "-2"


DEFAULT_TIME_DIM: int = _DefaultTimeDim(-2)


@dataclass(frozen=True)
class Layout:
    """Where time lives: inputs are viewed as ``[n_rows, n_steps, n_feat]`` without copying."""

    shape: torch.Size
    time_dim: int  # non-negative
    dtype: torch.dtype
    device: torch.device
    n_rows: int
    n_steps: int
    n_feat: int


def _resolve_time_dim(shape: torch.Size, time_dim: int) -> int:
    ndim = len(shape)
    if isinstance(time_dim, bool) or not isinstance(time_dim, int):
        raise ArgumentError("time_dim", f"expected an int, got {type(time_dim).__name__}")
    if time_dim is DEFAULT_TIME_DIM:
        if ndim < 2:
            raise ArgumentError(
                "time_dim",
                f"expected inputs of shape [*B, T, *F] with the default time_dim=-2, "
                f"got shape {tuple(shape)}; pass time_dim=-1 for a single [T] trajectory",
            )
        if ndim == 2 and shape[-1] != 1:
            # TorchRL would silently read the batch as time here.
            raise ArgumentError(
                "time_dim",
                f"expected [*B, T, *F] with a trailing feature dim, or an explicit "
                f"time_dim, for 2-D inputs; got shape {tuple(shape)} with the default "
                f"time_dim=-2, which is ambiguous (dim 0 would be read as time): pass "
                f"time_dim=-1 for [B, T] or add a trailing feature dim ([B, T, 1])",
            )
        return ndim - 2
    if not -ndim <= time_dim < ndim:
        raise ArgumentError(
            "time_dim",
            f"expected a dim in [{-ndim}, {ndim}) for inputs of shape "
            f"{tuple(shape)}, got {time_dim}",
        )
    return time_dim % ndim


def check_inputs(
    values: Mapping[str, Tensor],
    flags: Mapping[str, Tensor | None],
    time_dim: int,
) -> Layout:
    """Checks that all tensors share one shape and device, values one floating dtype, flags bool.

    ``values`` must start with ``state_value``, the tensor every other one is compared with.
    """
    ref_name, ref = next(iter(values.items()))
    for name, x in (*values.items(), *flags.items()):
        if x is None:
            continue
        if not isinstance(x, Tensor):
            raise ArgumentError(name, f"expected a torch.Tensor, got {type(x).__name__}")
    if not ref.is_floating_point():
        raise ArgumentError(ref_name, f"expected a floating dtype, got {ref.dtype}")
    for name, x in values.items():
        if not x.is_floating_point():
            raise ArgumentError(name, f"expected a floating dtype, got {x.dtype}")
        if x.dtype != ref.dtype:
            raise ArgumentError(name, f"expected dtype {ref.dtype} (as {ref_name}), got {x.dtype}")
    for name, x in flags.items():
        if x is not None and x.dtype != torch.bool:
            raise ArgumentError(name, f"expected dtype torch.bool, got {x.dtype}")
    for name, x in (*values.items(), *flags.items()):
        if x is None:
            continue
        if x.shape != ref.shape:
            raise ArgumentError(
                name,
                f"expected shape {tuple(ref.shape)} (as {ref_name}), got "
                f"{tuple(x.shape)}; inputs are never broadcast",
            )
        if x.device != ref.device:
            raise ArgumentError(
                name, f"expected device {ref.device} (as {ref_name}), got {x.device}"
            )
    td = _resolve_time_dim(ref.shape, time_dim)
    if ref.shape[td] == 0:
        raise ArgumentError(
            ref_name, f"expected at least one time step, got shape {tuple(ref.shape)}"
        )
    return Layout(
        shape=ref.shape,
        time_dim=td,
        dtype=ref.dtype,
        device=ref.device,
        n_rows=math.prod(ref.shape[:td]),
        n_steps=ref.shape[td],
        n_feat=math.prod(ref.shape[td + 1 :]),
    )


def _as_python_scalar(name: str, x: object) -> float | None:
    if isinstance(x, bool):
        raise ArgumentError(name, "expected a float or a floating tensor, got bool")
    if isinstance(x, int | float):
        return float(x)
    return None


def check_coef(name: str, x: object, layout: Layout) -> Coef:
    """A discount-like coefficient in [0, 1]: a Python number or a per-step tensor.

    A 0-d CPU tensor becomes a float (free on the host); a 0-d tensor elsewhere is expanded so
    reading it never synchronises. A per-step tensor must have the inputs' exact shape.
    """
    scalar = _as_python_scalar(name, x)
    if scalar is not None:
        if not 0.0 <= scalar <= 1.0:
            raise ArgumentError(name, f"expected a value in [0, 1], got {scalar}")
        return scalar
    if not isinstance(x, Tensor):
        raise ArgumentError(name, f"expected a float or a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ArgumentError(name, f"expected a floating dtype, got {x.dtype}")
    if x.ndim == 0:
        if x.device.type == "cpu":
            return check_coef(name, float(x), layout)
        x = x.expand(layout.shape)
    if x.shape != layout.shape:
        raise ArgumentError(
            name,
            f"expected a scalar or shape {tuple(layout.shape)} (as state_value), got "
            f"{tuple(x.shape)}; per-step coefficients are never broadcast",
        )
    if x.device != layout.device:
        raise ArgumentError(
            name, f"expected device {layout.device} (as state_value), got {x.device}"
        )
    return x.detach().to(layout.dtype)


def check_threshold(name: str, x: object) -> float:
    """A V-trace clipping threshold: a finite number > 0 (a 0-d tensor is read on the host)."""
    scalar = _as_python_scalar(name, x)
    if scalar is None:
        if not (isinstance(x, Tensor) and x.ndim == 0 and x.is_floating_point()):
            raise ArgumentError(
                name,
                f"expected a float or a 0-d floating tensor, got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}",
            )
        scalar = float(x)
    if not (math.isfinite(scalar) and scalar > 0.0):
        raise ArgumentError(name, f"expected a finite value > 0, got {scalar}")
    return scalar


def _first(mask: Tensor) -> tuple[int, ...] | None:
    if not bool(mask.any()):
        return None
    return tuple(int(i) for i in mask.nonzero()[0].tolist())


def diagnose(
    values: Mapping[str, Tensor | None],
    done: Tensor,
    terminated: Tensor,
    coefs: Mapping[str, Coef],
) -> NoReturn:
    """Finds the first failing data check and raises; slow, only run once a flag was raised.

    ``values`` maps argument names to tensors; ``next_state_value`` is only required to be
    finite where not terminated (a NaN bootstrap there never enters the result).
    """
    not_done = terminated & ~done
    for name, x in values.items():
        if x is None:
            continue
        if name == "next_state_value":
            where = _first(~torch.isfinite(x) & ~terminated)
            if where is not None:
                raise ArgumentError(
                    "next_state_value",
                    f"expected finite values wherever not terminated, got "
                    f"{float(x[where])} at index {where}",
                )
        else:
            where = _first(~torch.isfinite(x))
            if where is not None:
                raise ArgumentError(
                    name, f"expected finite values, got {float(x[where])} at index {where}"
                )
    where = _first(not_done)
    if where is not None:
        raise ArgumentError(
            "terminated",
            f"expected terminated ⇒ done, got terminated=True with done=False at index {where}",
        )
    check_coef_ranges(coefs)
    # Every input is finite yet the kernel saw a non-finite result: the recursion overflowed.
    raise ArgumentError(
        "reward",
        "the estimate overflowed to a non-finite value although every input is finite; "
        "rescale rewards and values (or pass float64)",
    )


def check_coef_ranges(coefs: Mapping[str, Coef]) -> None:
    """Per-step coefficient tensors in [0, 1] (scalars were checked on entry)."""
    for name, c in coefs.items():
        if isinstance(c, Tensor):
            where = _first(~((c >= 0) & (c <= 1)))
            if where is not None:
                raise ArgumentError(
                    name, f"expected values in [0, 1], got {float(c[where])} at index {where}"
                )


def raise_if_flagged(
    values: Mapping[str, Tensor | None],
    done: Tensor,
    terminated: Tensor,
    coefs: Mapping[str, Coef],
) -> None:
    """The torch path's validation: every check reduced on device, one host sync in total."""
    checks: list[Tensor] = []
    for name, x in values.items():
        if x is None:
            continue
        finite = torch.isfinite(x)
        if name == "next_state_value":
            finite = finite | terminated
        checks.append(~finite.all())
    checks.append((terminated & ~done).any())
    for c in coefs.values():
        if isinstance(c, Tensor):
            checks.append(~((c >= 0) & (c <= 1)).all())
    if bool(torch.stack(checks).any()):
        diagnose(values, done, terminated, coefs)
