"""Start-up warm-up: compile or load the kernels, then run every estimator once.

The first call of each estimator also pays one-off costs outside the kernels (torch and numpy
first-use initialisation, ~10 ms); a server calls this before it reports SERVING.
"""

from __future__ import annotations

import torch

from service.estimators import _kernels
from service.estimators.gae import gae
from service.estimators.td import td0, td1, td_lambda
from service.estimators.vtrace import vtrace


def warmup() -> None:
    """Compile (or load from the on-disk cache) every kernel and run each estimator once.

    Call it after any fork: numba's OpenMP threading layer terminates a process forked after
    it started.
    """
    _kernels.warmup()
    for dtype in (torch.float32, torch.float64):
        x = torch.zeros(2, 3, 1, dtype=dtype)
        flags = torch.zeros(2, 3, 1, dtype=torch.bool)
        td0(0.9, x, x, x, flags)
        td1(0.9, x, x, x, flags)
        td_lambda(0.9, 0.9, x, x, x, flags)
        gae(0.9, 0.9, x, x, x, flags)
        vtrace(0.9, x, x, x, x, x, flags)
