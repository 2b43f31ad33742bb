"""Is every element of a tensor finite? One question, asked on every request's hot path.

`torch.isfinite(x).all()` runs two kernels and a host read, and above torch's grain size it uses
torch's intra-op pool, which stalls when the machine is busy (issue 16). On a CPU tensor numpy's
`isfinite` + `all` is one pass in the calling thread: measured on the 2-core VM (1 December
2026), 6 µs against 35 µs on a [2, 33, 64] float32 tensor, 0.33 ms against 6.5 ms at 1024×1024.
Other devices (a CUDA tensor) and dtypes numpy lacks (bfloat16) keep torch's reduction.

Callers use `all_finite` as the fast answer and only then compute where a bad element is, for
their error message, with torch (the rare path).
"""

from __future__ import annotations

import numpy as np
import torch

_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def all_finite(tensor: torch.Tensor) -> bool:
    """True when `tensor` holds no NaN, +inf or −inf (always True for integer and bool)."""
    if not tensor.is_floating_point():
        return True
    if tensor.device.type == "cpu" and tensor.dtype in _NUMPY_FLOATS:
        return bool(np.isfinite(tensor.detach().numpy()).all())
    return bool(torch.isfinite(tensor).all())
