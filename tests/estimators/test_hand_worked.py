"""A 4-step trajectory worked by hand.

    t        0    1    2    3
    V        1    2    3    4
    V′       2   10    4  NaN     (V′₁ = 10: a truncation bootstraps from the true next state)
    r        1    0    2    1
    done     0    1    0    1
    term     0    0    0    1     (NaN never enters: step 3 is terminated)
    γ = 0.5, λ = 0.5, so γλ = 0.25; Ṽ = (1 − term)·V′ = [2, 10, 4, 0]

GAE: δ = r + γṼ − V = [1 + 1 − 1, 0 + 5 − 2, 2 + 2 − 3, 1 + 0 − 4] = [1, 3, 1, −3]
     A₃ = −3;  A₂ = 1 + 0.25·(−3) = 0.25;  A₁ = 3 (done);  A₀ = 1 + 0.25·3 = 1.75
     target = A + V = [2.75, 5, 3.25, 1]
TD(λ): G₃ = 1 + 0.5·(0.5·0 + 0.5·0) = 1;  G₂ = 2 + 0.5·(0.5·4 + 0.5·1) = 3.25
       G₁ = 0 + 0.5·(0.5·10 + 0.5·10) = 5 (done: bootstrap Ṽ₁);  G₀ = 1 + 0.5·(1 + 2.5) = 2.75
TD(1): G = [1 + 0.5·5, 0 + 0.5·10, 2 + 0.5·1, 1] = [3.5, 5, 2.5, 1]
TD(0): G = r + γṼ = [2, 5, 4, 1], A = [1, 3, 1, −3]
V-trace (ρ̄ = c̄ = 1): ρ = [1, 2, 0.5, 1] → ρ̂ = c = [1, 1, 0.5, 1]
     δ = ρ̂·(r + γṼ − V) = [1, 3, 0.5, −3]
     acc₃ = −3;  acc₂ = 0.5 + 0.5·0.5·(−3) = −0.25;  acc₁ = 3 (done);  acc₀ = 1 + 0.5·1·3 = 2.5
     vs = acc + V = [3.5, 5, 2.75, 1]
     q = [vs₁, Ṽ₁ (done), vs₃, Ṽ₃ (terminated)] = [5, 10, 1, 0]
     adv = ρ̂·(r + γq − V) = [1 + 2.5 − 1, 0 + 5 − 2, 0.5·(2 + 0.5 − 3), 1 − 4] = [2.5, 3, −0.25, −3]
"""

from __future__ import annotations

import math

import torch

from service.estimators import gae, td0, td1, td_lambda, vtrace


def _col(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64).reshape(-1, 1)


V = _col(1, 2, 3, 4)
NEXT_V = _col(2, 10, 4, math.nan)
R = _col(1, 0, 2, 1)
DONE = torch.tensor([0, 1, 0, 1], dtype=torch.bool).reshape(-1, 1)
TERM = torch.tensor([0, 0, 0, 1], dtype=torch.bool).reshape(-1, 1)
ARGS = (V, NEXT_V, R, DONE, TERM)


def _eq(actual: torch.Tensor, *expected: float) -> None:
    torch.testing.assert_close(actual, _col(*expected), rtol=1e-12, atol=1e-12)


def test_gae(backend: str) -> None:
    adv, target = gae(0.5, 0.5, *ARGS, _backend=backend)
    _eq(adv, 1.75, 3, 0.25, -3)
    _eq(target, 2.75, 5, 3.25, 1)


def test_td_lambda(backend: str) -> None:
    adv, ret = td_lambda(0.5, 0.5, *ARGS, _backend=backend)
    _eq(ret, 2.75, 5, 3.25, 1)
    _eq(adv, 1.75, 3, 0.25, -3)


def test_td1(backend: str) -> None:
    adv, ret = td1(0.5, *ARGS, _backend=backend)
    _eq(ret, 3.5, 5, 2.5, 1)
    _eq(adv, 2.5, 3, -0.5, -3)


def test_td0() -> None:
    adv, ret = td0(0.5, *ARGS)
    _eq(ret, 2, 5, 4, 1)
    _eq(adv, 1, 3, 1, -3)


def test_vtrace(backend: str) -> None:
    log_pi = _col(0, math.log(2), math.log(0.5), 0)
    log_mu = torch.zeros_like(log_pi)
    adv, vs = vtrace(0.5, log_pi, log_mu, *ARGS, _backend=backend)
    _eq(vs, 3.5, 5, 2.75, 1)
    _eq(adv, 2.5, 3, -0.25, -3)
