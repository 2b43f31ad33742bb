"""Input contracts shared by every estimator: shapes, dtypes, devices, coefficient ranges.

Torch broadcasts silently, and TorchRL's estimators accept inputs that give wrong answers without
a word (a ``[B, T]`` batch read as time, ``terminated`` without ``done``, NaN bootstraps). Every
public function calls these helpers first; each failure is a ``ValueError`` naming the argument
and showing what was expected and what was received. Everything else TorchRL's functionals take
is accepted and normalised here, as TorchRL computes it: mixed float dtypes (and an integer or
bool reward) are promoted with torch's rules, and a coefficient may be a one-element tensor or a
tensor of the inputs' rank that broadcasts to their shape.

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
    "check_log_probs",
    "check_threshold",
    "check_threshold_ranges",
    "derive",
    "diagnose",
    "is_per_step",
    "operand",
    "raise_if_flagged",
]

# Bits the kernels report when a data check fails. A bit only says *that* something is wrong;
# ``diagnose`` then finds which argument and where, and raises.
NON_FINITE = 1
TERMINATED_NOT_DONE = 2

# A coefficient, normalised: a Python float (already range-checked) or a tensor of the inputs'
# exact shape (possibly an expanded view of a broadcast one), dtype and device.
Coef = float | Tensor

# Value tensors that may have a non-floating dtype (promoted like torch, as TorchRL does).
_PROMOTABLE = frozenset({"reward"})


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
    """Checks that all tensors share one shape and device and that flags are bool.

    Value tensors may mix floating dtypes (and ``reward`` may be integer or bool): the layout's
    dtype is their torch promotion, as TorchRL's arithmetic promotes them; callers cast every
    value to it (``x.to(layout.dtype)``, free when it already has it). ``values`` must start with
    ``state_value``, the tensor every other one is compared with.
    """
    ref_name, ref = next(iter(values.items()))
    for name, x in (*values.items(), *flags.items()):
        if x is None:
            continue
        if not isinstance(x, Tensor):
            raise ArgumentError(name, f"expected a torch.Tensor, got {type(x).__name__}")
    if not ref.is_floating_point():
        raise ArgumentError(ref_name, f"expected a floating dtype, got {ref.dtype}")
    dtype = ref.dtype
    for name, x in values.items():
        if x.dtype == dtype:
            continue
        if x.is_floating_point():
            dtype = torch.promote_types(dtype, x.dtype)
        elif name not in _PROMOTABLE or x.is_complex():
            # Integer values truncate silently in TorchRL (its GAE and TD(λ) write into
            # next_state_value's dtype); only the reward is promoted.
            raise ArgumentError(name, f"expected a floating dtype, got {x.dtype}")
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
        dtype=dtype,
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


def _coef_tensor(name: str, x: object, layout: Layout, what: str) -> Tensor:
    """A coefficient tensor TorchRL would broadcast unambiguously, detached, shape unchanged.

    Accepted: the inputs' shape; one element (of rank ≤ the inputs', as ``torch.tensor([0.95])``);
    or the inputs' rank with size-1 dims that broadcast (``[B, 1, 1]``: one γ per trajectory).
    Refused: other shapes, which right-align against the inputs (a ``[B, T]`` γ against
    ``[B, T, 1]`` inputs would broadcast to ``[B, B, T]``).
    """
    if not isinstance(x, Tensor):
        raise ArgumentError(name, f"expected {what}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise ArgumentError(name, f"expected a floating dtype, got {x.dtype}")
    shape = layout.shape
    ok = (
        x.shape == shape
        or (x.numel() == 1 and x.ndim <= len(shape))
        or (x.ndim == len(shape) and all(a in (1, b) for a, b in zip(x.shape, shape, strict=True)))
    )
    if not ok:
        raise ArgumentError(
            name,
            f"expected a float, a 0-d or one-element tensor, or shape {tuple(shape)} (as "
            f"state_value, or that rank with size-1 dims to broadcast), got shape "
            f"{tuple(x.shape)}",
        )
    if x.device != layout.device and not (x.numel() == 1 and x.device.type == "cpu"):
        raise ArgumentError(
            name, f"expected device {layout.device} (as state_value), got {x.device}"
        )
    return x.detach()


def _normalise(x: Tensor, layout: Layout) -> Coef:
    """A valid coefficient tensor as a Coef: a CPU one-element tensor is read on the host (its
    value in its own dtype), anything else becomes an expanded view in the inputs' dtype."""
    if x.numel() == 1 and x.device.type == "cpu":
        return float(x)
    return x.to(layout.device).expand(layout.shape).to(layout.dtype)


def check_coef(name: str, x: object, layout: Layout) -> Coef:
    """A discount-like coefficient in [0, 1]: a Python number or a tensor (see ``_coef_tensor``).

    A one-element CPU tensor becomes a float, free on the host (its value in its own dtype: a
    float32 ``torch.tensor([0.95])`` is 0.949999988…, as TorchRL uses it); a one-element tensor
    elsewhere is expanded so reading it never synchronises. Tensors are detached and cast to the
    inputs' dtype; a tensor's range is a data check (``check_coef_ranges``).
    """
    scalar = _as_python_scalar(name, x)
    if scalar is not None:
        if not 0.0 <= scalar <= 1.0:
            raise ArgumentError(name, f"expected a value in [0, 1], got {scalar}")
        return scalar
    coef = _normalise(_coef_tensor(name, x, layout, "a float or a tensor"), layout)
    return check_coef(name, coef, layout) if isinstance(coef, float) else coef


def is_per_step(x: object, layout: Layout) -> bool:
    """TorchRL's test for a "time-sensitive" coefficient: a tensor of the inputs' exact shape."""
    return isinstance(x, Tensor) and x.shape == layout.shape


def operand(x: float | Tensor, layout: Layout) -> float | Tensor:
    """A checked coefficient as the user gave it, for arithmetic that must round as TorchRL's.

    TorchRL combines coefficients before broadcasting them (GAE's ``lmbda * gamma``, TD(λ)'s
    ``1 - lmbda``), so the result's dtype and rounding follow torch's rules on the original
    objects: two float32 one-element tensors multiply in float32, a Python float times a
    float32 tensor is rounded to float32 first. ``derive`` turns the result into a Coef.
    """
    if isinstance(x, Tensor):
        return x.detach().to(layout.device)
    return float(x)


def derive(x: float | Tensor, layout: Layout) -> Coef:
    """The result of arithmetic on ``operand``s as a Coef (a float stays a float)."""
    return _normalise(x, layout) if isinstance(x, Tensor) else float(x)


def check_threshold(name: str, x: object, layout: Layout) -> Coef:
    """A V-trace clipping threshold: a finite number > 0, or a tensor of them (shapes as a
    coefficient's; a tensor's values are a data check, ``check_threshold_ranges``)."""
    scalar = _as_python_scalar(name, x)
    if scalar is None:
        coef = _normalise(_coef_tensor(name, x, layout, "a float or a floating tensor"), layout)
        if not isinstance(coef, float):
            return coef
        scalar = coef
    if not (math.isfinite(scalar) and scalar > 0.0):
        raise ArgumentError(name, f"expected a finite value > 0, got {scalar}")
    return scalar


def check_log_probs(log_pi: Tensor, log_mu: Tensor) -> None:
    """log π may be −inf (an action the target policy cannot take: ρ = 0, as in TorchRL); log μ
    must be finite (the behaviour policy took the action); neither may be NaN or +inf."""
    where = _first(torch.isnan(log_pi) | (log_pi == math.inf))
    if where is not None:
        raise ArgumentError(
            "log_pi",
            f"expected finite values or -inf, got {float(log_pi[where])} at index {where}",
        )
    where = _first(~torch.isfinite(log_mu))
    if where is not None:
        raise ArgumentError(
            "log_mu", f"expected finite values, got {float(log_mu[where])} at index {where}"
        )


def _first(mask: Tensor) -> tuple[int, ...] | None:
    if not bool(mask.any()):
        return None
    return tuple(int(i) for i in mask.nonzero()[0].tolist())


def _finite(name: str, x: Tensor, terminated: Tensor) -> Tensor:
    """Where ``x`` is acceptable: finite, or unread (a terminated bootstrap), or a log π of −inf."""
    finite = torch.isfinite(x)
    if name == "next_state_value":
        return finite | terminated
    if name == "log_pi":
        return finite | (x == -math.inf)
    return finite


def diagnose(
    values: Mapping[str, Tensor | None],
    done: Tensor,
    terminated: Tensor,
    coefs: Mapping[str, Coef],
    thresholds: Mapping[str, Coef] | None = None,
) -> NoReturn:
    """Finds the first failing data check and raises; slow, only run once a flag was raised.

    ``values`` maps argument names to tensors; ``next_state_value`` is only required to be
    finite where not terminated (a NaN bootstrap there never enters the result), ``log_pi`` may
    be −inf.
    """
    not_done = terminated & ~done
    for name, x in values.items():
        if x is None:
            continue
        where = _first(~_finite(name, x, terminated))
        if where is None:
            continue
        if name == "next_state_value":
            expected = "finite values wherever not terminated"
        elif name == "log_pi":
            expected = "finite values or -inf"
        else:
            expected = "finite values"
        raise ArgumentError(name, f"expected {expected}, got {float(x[where])} at index {where}")
    where = _first(not_done)
    if where is not None:
        raise ArgumentError(
            "terminated",
            f"expected terminated ⇒ done, got terminated=True with done=False at index {where}",
        )
    check_coef_ranges(coefs)
    check_threshold_ranges(thresholds or {})
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


def check_threshold_ranges(thresholds: Mapping[str, Coef]) -> None:
    """Threshold tensors finite and > 0 (scalars were checked on entry)."""
    for name, c in thresholds.items():
        if isinstance(c, Tensor):
            where = _first(~(torch.isfinite(c) & (c > 0)))
            if where is not None:
                raise ArgumentError(
                    name, f"expected finite values > 0, got {float(c[where])} at index {where}"
                )


def raise_if_flagged(
    values: Mapping[str, Tensor | None],
    done: Tensor,
    terminated: Tensor,
    coefs: Mapping[str, Coef],
    thresholds: Mapping[str, Coef] | None = None,
) -> None:
    """The torch path's validation: every check reduced on device, one host sync in total."""
    checks: list[Tensor] = []
    for name, x in values.items():
        if x is None:
            continue
        checks.append(~_finite(name, x, terminated).all())
    checks.append((terminated & ~done).any())
    for c in coefs.values():
        if isinstance(c, Tensor):
            checks.append(~((c >= 0) & (c <= 1)).all())
    for c in (thresholds or {}).values():
        if isinstance(c, Tensor):
            checks.append(~(torch.isfinite(c) & (c > 0)).all())
    if bool(torch.stack(checks).any()):
        diagnose(values, done, terminated, coefs, thresholds)
