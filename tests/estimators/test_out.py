"""``out=``: the estimators write into caller-provided tensors, with TorchRL's numbers."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torchrl.objectives.value import functional as F

from service.errors import ArgumentError
from service.estimators import gae, td0, td1, td_lambda, vtrace
from tests.support.estimators import DTYPES, assert_close, make_batch, torchrl_exact

SHAPE = (5, 40, 1)


def _pair(dtype: torch.dtype, shape=SHAPE) -> tuple[Tensor, Tensor]:
    # Filled with NaN: a step the estimator forgot to write would show.
    return torch.full(shape, float("nan"), dtype=dtype), torch.full(
        shape, float("nan"), dtype=dtype
    )


def _references(b, dtype):
    g, lm = torchrl_exact(0.97, dtype), torchrl_exact(0.9, dtype)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    one = torchrl_exact(1.0, dtype)
    td0_ret = F.td0_return_estimate(g, b.next_state_value, b.reward, b.terminated, done=b.done)
    td1_ret = F.td1_return_estimate(g, *args[1:])
    tdl_ret = F.td_lambda_return_estimate(g, lm, *args[1:])
    return {
        "gae": F.generalized_advantage_estimate(g, lm, *args),
        "td0": (td0_ret - b.state_value, td0_ret),
        "td1": (td1_ret - b.state_value, td1_ret),
        "td_lambda": (tdl_ret - b.state_value, tdl_ret),
        "vtrace": F.vtrace_advantage_estimate(
            g, b.log_pi, b.log_mu, *args, rho_thresh=one, c_thresh=one
        ),
    }


def _ours(name: str, b, out, backend: str):
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    kw = {"out": out, "_backend": backend}
    if name == "gae":
        return gae(0.97, 0.9, *args, **kw)
    if name == "td0":
        return td0(0.97, *args, **kw)
    if name == "td1":
        return td1(0.97, *args, **kw)
    if name == "td_lambda":
        return td_lambda(0.97, 0.9, *args, **kw)
    return vtrace(0.97, b.log_pi, b.log_mu, *args, **kw)


@pytest.mark.parametrize("name", ["gae", "td0", "td1", "td_lambda", "vtrace"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_out_holds_torchrls_numbers(name: str, dtype: torch.dtype, backend: str) -> None:
    b = make_batch(SHAPE, dtype, seed=90)
    expected = _references(b, dtype)[name]
    out = _pair(dtype)
    result = _ours(name, b, out, backend)
    assert result[0] is out[0] and result[1] is out[1]
    assert_close(out[0], expected[0])
    assert_close(out[1], expected[1])


def test_out_reused_across_calls_with_other_data(backend: str) -> None:
    out = _pair(torch.float32)
    for seed in (1, 2, 3):
        b = make_batch(SHAPE, torch.float32, seed=seed)
        args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
        gae(0.99, 0.95, *args, out=out, _backend=backend)
        ref = F.generalized_advantage_estimate(0.99, 0.95, *args)
        assert_close(out[0], ref[0])
        assert_close(out[1], ref[1])


def test_out_with_average_gae_holds_the_standardised_advantage() -> None:
    b = make_batch(SHAPE, torch.float64, seed=4)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    out = _pair(torch.float64)
    gae(0.9, 0.8, *args, average_gae=True, out=out)
    g, lm = torchrl_exact(0.9, torch.float64), torchrl_exact(0.8, torch.float64)
    adv, target = F.generalized_advantage_estimate(g, lm, *args)
    expected = (adv - adv.mean()) / adv.std().clamp_min(1e-4)
    assert_close(out[0], expected)
    assert_close(out[1], target)


def _args(dtype=torch.float32):
    b = make_batch(SHAPE, dtype, seed=5)
    return (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)


@pytest.mark.parametrize(
    ("out", "argument", "fragment"),
    [
        (lambda: torch.empty(SHAPE), "out", "pair of tensors"),
        (lambda: (torch.empty(SHAPE),), "out", "pair of tensors"),
        (lambda: (torch.empty(5, 40), torch.empty(SHAPE)), "out[0]", r"got shape \(5, 40\)"),
        (lambda: (torch.empty(SHAPE), torch.empty(SHAPE, dtype=torch.float64)), "out[1]", "dtype"),
        (
            lambda: (torch.empty(5, 40, 2)[..., :1], torch.empty(SHAPE)),
            "out[0]",
            "contiguous",
        ),
        (
            lambda: (torch.empty(SHAPE, requires_grad=True), torch.empty(SHAPE)),
            "out[0]",
            "autograd",
        ),
        (lambda: (torch.empty(SHAPE), [1.0]), "out[1]", "a tensor"),
    ],
)
def test_bad_out_is_refused_by_name(out, argument: str, fragment: str, backend: str) -> None:
    with pytest.raises(ArgumentError, match=fragment) as info:
        gae(0.9, 0.9, *_args(), out=out(), _backend=backend)
    assert info.value.argument == argument


def test_out_sharing_memory_is_refused(backend: str) -> None:
    args = _args()
    one = torch.empty(SHAPE)
    with pytest.raises(ArgumentError, match="separate memory"):
        gae(0.9, 0.9, *args, out=(one, one), _backend=backend)
    with pytest.raises(ArgumentError, match="an input's memory"):
        gae(0.9, 0.9, *args, out=(args[0], torch.empty(SHAPE)), _backend=backend)
    with pytest.raises(ArgumentError, match="an input's memory"):
        td_lambda(0.9, 0.9, *args, out=(torch.empty(SHAPE), args[2]), _backend=backend)


def test_out_refused_when_gradients_must_flow() -> None:
    value = torch.randn(SHAPE, requires_grad=True)
    args = _args()
    with pytest.raises(ArgumentError, match="autograd"):
        gae(0.9, 0.9, value, *args[1:], differentiable=True, out=_pair(torch.float32))
