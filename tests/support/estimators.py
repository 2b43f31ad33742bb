"""Trajectory generators and tolerances shared by the estimator tests."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

BACKENDS = ("numba", "torch")
DTYPES = (torch.float32, torch.float64)


@dataclass
class Batch:
    state_value: Tensor
    next_state_value: Tensor
    reward: Tensor
    done: Tensor
    terminated: Tensor
    log_pi: Tensor
    log_mu: Tensor


def make_batch(
    shape: tuple[int, ...],
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    p_done: float = 0.1,
    p_term: float = 0.5,
) -> Batch:
    """Random trajectories: dones with probability p_done, half of them terminations."""
    g = torch.Generator().manual_seed(seed)

    def randn() -> Tensor:
        return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)

    done = torch.rand(shape, generator=g) < p_done
    terminated = done & (torch.rand(shape, generator=g) < p_term)
    return Batch(
        state_value=randn(),
        next_state_value=randn(),
        reward=randn(),
        done=done,
        terminated=terminated,
        log_pi=0.5 * randn(),
        log_mu=0.5 * randn(),
    )


def per_step(shape: tuple[int, ...], lo: float, hi: float, dtype: torch.dtype, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)).to(dtype)


def assert_close(actual: Tensor, expected: Tensor) -> None:
    """float64 ≤ 1e-12; float32 ≤ 1e-5 relative to the reference's scale."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    if expected.dtype == torch.float64:
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    else:
        scale = float(expected.abs().max()) if expected.numel() else 1.0
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * max(scale, 1.0))


def torchrl_exact(value: float, dtype: torch.dtype) -> float | Tensor:
    """A coefficient as TorchRL needs it to compute exactly in ``dtype``: it rounds Python-float
    γ/λ/thresholds to float32, so float64 data gets a float64 0-d tensor."""
    return torch.tensor(value, dtype=torch.float64) if dtype == torch.float64 else value


def assert_bitwise(actual: Tensor, expected: Tensor) -> None:
    """Identical floats (±0 compare equal), shapes and dtypes."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    assert torch.equal(actual, expected), (actual - expected).abs().max()


def force_parallel_builds(monkeypatch) -> list[bool]:
    """Make every kernel call launch the parallel (prange) build with two threads, however small
    the input or busy the machine; returns the list of ``parallel`` flags the kernels were
    fetched with, so a test can check the parallel build really ran."""
    from service.estimators import _kernels, threads

    monkeypatch.setattr(
        threads, "_policy", threads.ThreadPolicy(2, parallel_min_elements=0, watch_load=False)
    )
    fetched: list[bool] = []
    original = _kernels.get

    def get(name: str, parallel: bool = True):
        fetched.append(parallel)
        return original(name, parallel)

    monkeypatch.setattr(_kernels, "get", get)
    return fetched
