"""Advantage and value-target estimators with TorchRL 0.14.1 semantics.

Each function returns ``(advantage, value_target)`` (``(advantage, vs)`` for V-trace), takes
TorchRL's functional argument names, and refuses inputs TorchRL silently gets wrong. On CPU a
compiled numba kernel runs the recursion; the pure-torch path covers CUDA and autograd.
Call ``warmup()`` once at start-up so the first request does not pay for compilation.

Performance: how many threads a kernel uses is ``threads``' policy (serial for small work and on
a busy machine); importing this package raises glibc's mmap threshold (``memory``; opt out with
``ADVANTAGE_ESTIMATORS_MALLOC=default``) so large outputs do not page-fault on every call.
"""

from service.estimators._warmup import warmup
from service.estimators.gae import gae
from service.estimators.memory import tune_allocator_unless_opted_out
from service.estimators.standardize import standardize
from service.estimators.td import td0, td1, td_lambda
from service.estimators.vtrace import vtrace

tune_allocator_unless_opted_out()

__all__ = ["gae", "standardize", "td0", "td1", "td_lambda", "vtrace", "warmup"]
