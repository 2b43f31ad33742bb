"""symlog and symexp, DreamerV3's squashing of targets of unknown scale.

Hafner et al. 2023, "Mastering Diverse Domains through World Models" (arXiv 2301.04104), eq. 9:

    symlog(x) = sign(x) · ln(1 + |x|)        symexp(x) = sign(x) · (exp(|x|) − 1)

symexp is the inverse of symlog. Both act element-wise and keep shape, dtype and device.
"""

from __future__ import annotations

import torch


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) · ln(1 + |x|): compresses large magnitudes, about the identity near 0."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """sign(x) · (exp(|x|) − 1), the inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())
