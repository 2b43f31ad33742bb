"""Class options (standardisation, differentiable), NaN bootstraps, layouts, devices, threads."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from tensordict import TensorDict
from torchrl.objectives.value import GAE, TD0Estimator, TD1Estimator, TDLambdaEstimator
from torchrl.objectives.value import functional as F

from service.estimators import gae, td0, td1, td_lambda, vtrace, warmup
from tests.support.estimators import assert_close, make_batch

# Exactly representable in float32: TorchRL's classes store γ and λ as float32 buffers.
GAMMA, LMBDA = 0.75, 0.5


def _tensordict(b) -> TensorDict:
    return TensorDict(
        {
            "state_value": b.state_value,
            "next": {
                "state_value": b.next_state_value,
                "reward": b.reward,
                "done": b.done,
                "terminated": b.terminated,
            },
        },
        batch_size=b.state_value.shape[:-1],
    )


def _small_spread(b, scale: float) -> None:
    """Advantages with std below the eps clamp, so the epsilon itself is tested."""
    b.reward = b.reward * scale
    b.state_value = b.state_value * scale
    b.next_state_value = b.next_state_value * scale


CLASS_CASES = [
    ("gae", GAE, {"lmbda": LMBDA, "average_gae": True, "vectorized": False}, "average_gae"),
    ("td0", TD0Estimator, {"average_rewards": True}, "average_rewards"),
    ("td1", TD1Estimator, {"average_rewards": True}, "average_rewards"),
    ("td_lambda", TDLambdaEstimator, {"lmbda": LMBDA, "average_rewards": True,
                                      "vectorized": False}, "average_rewards"),
]  # fmt: skip


def _ours(name: str, b, backend: str, **kw):
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    if name == "gae":
        return gae(GAMMA, LMBDA, *args, _backend=backend, **kw)
    if name == "td_lambda":
        return td_lambda(GAMMA, LMBDA, *args, _backend=backend, **kw)
    if name == "td1":
        return td1(GAMMA, *args, _backend=backend, **kw)
    return td0(GAMMA, *args, _backend=backend, **kw)


@pytest.mark.parametrize("scale", [1.0, 1e-6])
@pytest.mark.parametrize(("name", "cls", "kwargs", "option"), CLASS_CASES)
def test_standardisation_and_gradients_match_torchrl_classes(
    backend: str, name: str, cls, kwargs: dict, option: str, scale: float
) -> None:
    b = make_batch((4, 30, 1), torch.float64, seed=1)
    _small_spread(b, scale)
    ref_v = b.state_value.clone().requires_grad_()
    module = cls(gamma=GAMMA, value_network=None, differentiable=True, **kwargs)
    ref = module(_tensordict(type(b)(**{**b.__dict__, "state_value": ref_v})))
    ref_adv, ref_target = ref["advantage"], ref["value_target"]

    # Values without autograd: the kernel path; with: the torch path. Both must match.
    adv, target = _ours(name, b, backend, **{option: True})
    assert_close(adv, ref_adv.detach())
    assert_close(target, ref_target.detach())
    if backend == "torch":
        v = b.state_value.clone().requires_grad_()
        b.state_value = v
        adv, target = _ours(name, b, "auto", differentiable=True, **{option: True})
        w1, w2 = torch.randn_like(adv), torch.randn_like(adv)
        (grad,) = torch.autograd.grad((adv * w1).sum() + (target * w2).sum(), v)
        (ref_grad,) = torch.autograd.grad((ref_adv * w1).sum() + (ref_target * w2).sum(), ref_v)
        assert_close(grad, ref_grad)


@pytest.mark.parametrize("scale", [1.0, 1e-7])
def test_vtrace_average_adv_eps(backend: str, scale: float) -> None:
    b = make_batch((4, 30, 1), torch.float64, seed=2)
    _small_spread(b, scale)
    args = (b.log_pi, b.log_mu, b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, _ = vtrace(0.9, *args, average_adv=True, _backend=backend)
    ref, _ = F.vtrace_advantage_estimate(
        torch.tensor(0.9, dtype=torch.float64), *args,
        rho_thresh=torch.tensor(1.0, dtype=torch.float64),
        c_thresh=torch.tensor(1.0, dtype=torch.float64),
    )  # fmt: skip
    # TorchRL's VTrace(average_adv=True), which needs an actor network to call, does exactly:
    assert_close(adv, (ref - ref.mean()) / ref.std().clamp_min(1e-5))


@pytest.mark.parametrize("name", ["gae", "td_lambda", "td1", "vtrace"])
def test_differentiable_gradients_match_torchrl_functional(name: str) -> None:
    b = make_batch((3, 25, 1), torch.float64, seed=3)
    g64, l64 = (torch.tensor(x, dtype=torch.float64) for x in (0.9, 0.8))
    v_ours = b.state_value.clone().requires_grad_()
    v_ref = b.state_value.clone().requires_grad_()
    rest = (b.next_state_value, b.reward, b.done, b.terminated)
    if name == "gae":
        ours = gae(0.9, 0.8, v_ours, *rest, differentiable=True)
        ref = F.generalized_advantage_estimate(g64, l64, v_ref, *rest)
    elif name == "td_lambda":
        ours = td_lambda(0.9, 0.8, v_ours, *rest, differentiable=True)
        ret = F.td_lambda_return_estimate(g64, l64, *rest)
        ref = (ret - v_ref, ret)
    elif name == "td1":
        ours = td1(0.9, v_ours, *rest, differentiable=True)
        ret = F.td1_return_estimate(g64, *rest)
        ref = (ret - v_ref, ret)
    else:
        ours = vtrace(0.9, b.log_pi, b.log_mu, v_ours, *rest, differentiable=True)
        one = torch.tensor(1.0, dtype=torch.float64)
        ref = F.vtrace_advantage_estimate(
            g64, b.log_pi, b.log_mu, v_ref, *rest, rho_thresh=one, c_thresh=one
        )
    w1, w2 = torch.randn_like(v_ours), torch.randn_like(v_ours)
    loss = (ours[0] * w1).sum() + (ours[1] * w2).sum()
    ref_loss = (
        (ref[0] * w1).sum() + (ref[1] * w2).sum() if ref[1].requires_grad else (ref[0] * w1).sum()
    )
    (grad,) = torch.autograd.grad(loss, v_ours)
    (ref_grad,) = torch.autograd.grad(ref_loss, v_ref)
    assert_close(grad, ref_grad)


def test_values_receive_gradients_log_probs_do_not() -> None:
    """As through TorchRL's functional, gradients reach the values and the reward; the
    importance weights stay constants (see test_torchrl_inputs for the gradients' values)."""
    b = make_batch((2, 10, 1), torch.float32, seed=4)
    inputs = (b.state_value, b.next_state_value, b.reward, b.log_pi, b.log_mu)
    v, nv, r, lp, lq = (x.clone().requires_grad_() for x in inputs)
    adv, _vs = vtrace(0.9, lp, lq, v, nv, r, b.done, b.terminated, differentiable=True)
    adv.sum().backward()
    assert v.grad is not None and nv.grad is not None and r.grad is not None
    assert r.grad.norm() > 0
    assert lp.grad is None and lq.grad is None


@pytest.mark.parametrize("name", ["gae", "td_lambda", "td1", "td0", "vtrace"])
def test_not_differentiable_by_default(name: str, backend: str) -> None:
    b = make_batch((2, 10, 1), torch.float32, seed=5)
    b.state_value.requires_grad_()
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    if name == "vtrace":
        out = vtrace(0.9, b.log_pi, b.log_mu, *args, _backend=backend)
    else:
        out = _ours(name, b, backend if name != "td0" else "auto")
    assert not out[0].requires_grad and not out[1].requires_grad


@pytest.mark.parametrize("name", ["gae", "td_lambda", "td1", "td0", "vtrace"])
def test_nan_bootstrap_at_terminated_steps(name: str, backend: str) -> None:
    """NaN in next_state_value where terminated never enters; TorchRL would return NaN."""
    b = make_batch((4, 30, 1), torch.float64, seed=6, p_done=0.2)
    assert b.terminated.any()
    clean = b.next_state_value.clone()
    b.next_state_value = torch.where(b.terminated, math.nan, clean)
    if name == "vtrace":
        args = (b.log_pi, b.log_mu, b.state_value)
        out = vtrace(
            0.9, *args, b.next_state_value, b.reward, b.done, b.terminated, _backend=backend
        )
        ref = vtrace(0.9, *args, clean, b.reward, b.done, b.terminated, _backend=backend)
    else:
        be = backend if name != "td0" else "auto"
        out = _ours(name, b, be)
        b.next_state_value = clean
        ref = _ours(name, b, be)
    for o, r in zip(out, ref, strict=True):
        assert torch.isfinite(o).all()
        assert_close(o, r)


def test_validate_false_skips_data_checks(backend: str) -> None:
    b = make_batch((2, 10, 1), torch.float32, seed=7)
    b.reward[0, 3, 0] = math.nan
    adv, _ = gae(0.9, 0.9, b.state_value, b.next_state_value, b.reward, b.done, b.terminated,
                 validate=False, _backend=backend)  # fmt: skip
    assert torch.isnan(adv[0, 3, 0])


def test_explicit_time_dim_for_2d_and_1d(backend: str) -> None:
    b = make_batch((3, 12, 1), torch.float64, seed=8)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    full = gae(0.9, 0.8, *args, _backend=backend)
    bt = gae(0.9, 0.8, *(x[..., 0] for x in args), time_dim=-1, _backend=backend)
    t = gae(0.9, 0.8, *(x[1, :, 0] for x in args), time_dim=-1, _backend=backend)
    single = gae(0.9, 0.8, *(x[1] for x in args), _backend=backend)  # [T, 1] is unambiguous
    for f, two, one, s in zip(full, bt, t, single, strict=True):
        assert_close(two, f[..., 0])
        assert_close(one, f[1, :, 0])
        assert_close(s, f[1])


def test_per_step_lambda_where_torchrl_vectorised_raises(backend: str) -> None:
    b = make_batch((3, 20, 1), torch.float64, seed=9)
    lmbda = torch.rand(
        b.reward.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    args = (b.next_state_value, b.reward, b.done, b.terminated)
    with pytest.raises(Exception):  # noqa: B017 - documents TorchRL's failure, whatever its type
        F.vec_td_lambda_return_estimate(0.9, lmbda, *args)
    _, ret = td_lambda(0.9, lmbda, b.state_value, *args, _backend=backend)
    assert_close(
        ret, F.td_lambda_return_estimate(torch.tensor(0.9, dtype=torch.float64), lmbda, *args)
    )


def test_half_precision_uses_torch_path() -> None:
    b = make_batch((2, 16, 1), torch.float32, seed=10)
    args = [x.to(torch.bfloat16) for x in (b.state_value, b.next_state_value, b.reward)]
    adv, _ = gae(0.9, 0.9, *args, b.done, b.terminated)
    assert adv.dtype == torch.bfloat16
    ref, _ = gae(0.9, 0.9, *(x.float() for x in args), b.done, b.terminated)
    torch.testing.assert_close(adv.float(), ref, rtol=0.05, atol=0.05)


def test_concurrent_calls_from_threads() -> None:
    warmup()
    batches = [make_batch((16, 64, 1), torch.float32, seed=s) for s in range(8)]

    def run(b):
        return gae(0.99, 0.95, b.state_value, b.next_state_value, b.reward, b.done, b.terminated)

    expected = [run(b) for b in batches]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, batches * 4))
    for i, out in enumerate(got):
        assert torch.equal(out[0], expected[i % len(batches)][0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["gae", "td_lambda", "td1", "td0", "vtrace"])
def test_cuda_matches_cpu(name: str) -> None:
    b = make_batch((8, 40, 1), torch.float32, seed=11)
    cpu = (
        _ours(name, b, "auto")
        if name != "vtrace"
        else vtrace(
            0.9,
            b.log_pi,
            b.log_mu,
            b.state_value,
            b.next_state_value,
            b.reward,
            b.done,
            b.terminated,
        )
    )
    for k, v in list(b.__dict__.items()):
        setattr(b, k, v.cuda())
    gpu = (
        _ours(name, b, "auto")
        if name != "vtrace"
        else vtrace(
            0.9,
            b.log_pi,
            b.log_mu,
            b.state_value,
            b.next_state_value,
            b.reward,
            b.done,
            b.terminated,
        )
    )
    for c, g in zip(cpu, gpu, strict=True):
        assert g.device.type == "cuda"
        assert_close(g.cpu(), c)
