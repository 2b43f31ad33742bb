"""The keyword knobs of the previous release (``gamma=``, ``clip_epsilon=``, ``estimator_options=``
…), kept for one release: folded into option objects here, in one place for both calls and both
clients, with a DeprecationWarning.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any

from advantage_client._knobs import KNOBS, LOSS_KNOBS, check_knobs, check_loss_knobs
from advantage_client.options import (
    EstimatorLike,
    EstimatorOptions,
    LossLike,
    LossOptions,
    estimator_from,
    loss_from,
)

__all__ = ["advantage_keywords", "loss_keywords"]

_ESTIMATOR_KNOBS = frozenset().union(*KNOBS.values())
_LOSS_KNOBS = frozenset().union(*LOSS_KNOBS.values())
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def _warn(message: str) -> None:
    """A DeprecationWarning attributed to the first caller outside this package."""
    frame = sys._getframe(1)
    level = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def _with_knobs(
    value: Any, knobs: Mapping[str, Any], kind: type[EstimatorOptions] | type[LossOptions]
) -> Any:
    """`value` (a name, or an option object with no knob set, such as the default) as an option
    object with the set `knobs`; an object with knobs of its own must carry all of them."""
    set_knobs = {k: v for k, v in knobs.items() if v is not None}
    if isinstance(value, kind) and value.knobs():
        if set_knobs:
            raise TypeError(
                f"pass {', '.join(set_knobs)} in the option object itself "
                f"({type(value).__name__}(...)), not as keywords"
            )
        return value
    resolved = estimator_from(value) if kind is EstimatorOptions else loss_from(value)
    check = check_knobs if kind is EstimatorOptions else check_loss_knobs
    check(resolved.oneof_field, knobs)
    return type(resolved)(**set_knobs)


def _suggestion(argument: str, options: Any, knobs: Mapping[str, Any]) -> str:
    set_knobs = ", ".join(f"{k}=..." for k, v in knobs.items() if v is not None)
    return f"{argument}={type(options).__name__}({set_knobs})"


def advantage_keywords(
    estimator: EstimatorLike | None, keywords: dict[str, Any]
) -> EstimatorLike | None:
    """Take compute_advantage's deprecated knob keywords out of `keywords` (the call's other
    keywords) and return the estimator they describe; `estimator` itself when there are none."""
    knobs = {k: keywords.pop(k) for k in list(keywords) if k in _ESTIMATOR_KNOBS}
    if not knobs:
        return estimator
    options = _with_knobs("gae" if estimator is None else estimator, knobs, EstimatorOptions)
    _warn(
        f"compute_advantage({', '.join(f'{k}=' for k in knobs)}...) is deprecated and will be "
        f"removed in the next release: pass {_suggestion('estimator', options, knobs)}"
    )
    return options


def loss_keywords(
    loss: LossLike, estimator: EstimatorLike | None, keywords: dict[str, Any]
) -> tuple[LossLike, EstimatorLike | None]:
    """Take compute_loss's deprecated keywords (the loss's knobs, ``estimator_options``) out of
    `keywords` and return the (loss, estimator) they describe."""
    knobs = {k: keywords.pop(k) for k in list(keywords) if k in _LOSS_KNOBS}
    estimator_options = keywords.pop("estimator_options", None)
    if estimator_options is not None and not isinstance(estimator_options, Mapping):
        raise TypeError(
            f"estimator_options must be a mapping, got {type(estimator_options).__name__}"
        )
    advice = []
    if knobs:
        loss = _with_knobs(loss, knobs, LossOptions)
        advice.append(_suggestion("loss", loss, knobs))
    if estimator_options:
        name = "gae" if estimator is None else estimator
        estimator = _with_knobs(name, estimator_options, EstimatorOptions)
        advice.append(_suggestion("estimator", estimator, estimator_options))
    if knobs or estimator_options is not None:
        used = [*knobs, *(["estimator_options"] if estimator_options is not None else [])]
        _warn(
            f"compute_loss({', '.join(f'{k}=' for k in used)}...) is deprecated and will be "
            f"removed in the next release: pass {' and '.join(advice) or 'estimator=...'}"
        )
    return loss, estimator
