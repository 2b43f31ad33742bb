"""Reading optional scalar knobs from request messages, with their range checks.

Each reader returns `{knob: value}` when the field is set (ready to merge into keyword
arguments) and `{}` when it is not; an out-of-range value is INVALID_ARGUMENT naming
`<where>.<knob>`, the expected range and the value.
"""

from __future__ import annotations

from typing import Any

from service.errors import InvalidArgument


def _read(message: Any, knob: str, where: str, ok: bool | None, expected: str) -> dict[str, Any]:
    value = getattr(message, knob)
    if not ok:
        raise InvalidArgument(f"{where}.{knob}: expected {expected}, got {value}")
    return {knob: value}


def positive(message: Any, knob: str, where: str) -> dict[str, float]:
    """`knob` if set, which must be > 0 (thresholds, ε, KL target)."""
    if not message.HasField(knob):
        return {}
    return _read(message, knob, where, getattr(message, knob) > 0.0, "a value > 0")


def non_negative(message: Any, knob: str, where: str) -> dict[str, float]:
    """`knob` if set, which must be ≥ 0 (coefficients)."""
    if not message.HasField(knob):
        return {}
    return _read(message, knob, where, getattr(message, knob) >= 0.0, "a value ≥ 0")


def unit_interval(message: Any, knob: str, where: str) -> dict[str, float]:
    """`knob` if set, which must be in [0, 1] (γ, λ)."""
    if not message.HasField(knob):
        return {}
    value = getattr(message, knob)
    return _read(message, knob, where, 0.0 <= value <= 1.0, "a value in [0, 1]")
