"""What an estimator's or a loss's scalar knob accepts: its range, said once.

The registries (`service.estimators.registry`, `service.losses.registry`) declare a `Knob` per
option; the wire layer reads the request field of the same name and applies it, so a new
estimator or loss declares its knobs here-style and writes no reading code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Knob:
    """A scalar option: `accepts(value)` says whether `value` is in range; `expected` says the
    range in words for the error message; `model_default` = when unset, the model manifest's
    `defaults` value of the same name applies (γ, λ)."""

    expected: str
    accepts: Callable[[float], bool]
    model_default: bool = False


POSITIVE = Knob("a finite value > 0", lambda v: math.isfinite(v) and v > 0.0)
NON_NEGATIVE = Knob("a finite value ≥ 0", lambda v: math.isfinite(v) and v >= 0.0)
UNIT_INTERVAL = Knob("a value in [0, 1]", lambda v: 0.0 <= v <= 1.0)
#: Booleans and enums: every value the contract can carry is accepted.
ANY = Knob("any value", lambda v: True)
#: γ/λ as a `Coefficient` (a scalar in [0, 1] or a per-step tensor); unset = the model's default.
COEFFICIENT = Knob("a value in [0, 1]", lambda v: 0.0 <= v <= 1.0, model_default=True)
#: A plain γ in [0, 1] whose default is the model's.
MODEL_GAMMA = Knob("a value in [0, 1]", lambda v: 0.0 <= v <= 1.0, model_default=True)
#: Any finite real (a target entropy).
FINITE = Knob("a finite value", math.isfinite)
#: A whole number ≥ 1 (an ensemble size).
COUNT = Knob("an integer ≥ 1", lambda v: int(v) == v and v >= 1)
