"""Advantage and value-target estimators with TorchRL 0.14.1 semantics.

Each function returns ``(advantage, value_target)`` (``(advantage, vs)`` for V-trace), takes
TorchRL's functional argument names, and refuses inputs TorchRL silently gets wrong. On CPU a
compiled numba kernel runs the recursion; the pure-torch path covers CUDA and autograd.
Call ``warmup()`` once at start-up so the first request does not pay for compilation.
"""

from service.estimators._warmup import warmup
from service.estimators.gae import gae
from service.estimators.standardize import standardize
from service.estimators.td import td0, td1, td_lambda
from service.estimators.vtrace import vtrace

__all__ = ["gae", "standardize", "td0", "td1", "td_lambda", "vtrace", "warmup"]
