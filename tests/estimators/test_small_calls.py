"""The small-call paths: GAE's pointer entry point and V-trace's serial ``exp``, against TorchRL.

Both exist for speed only (issue 16), so what is checked here is that they are taken and that
they change nothing: TorchRL's numbers bit for bit, and the same refusals.
"""

from __future__ import annotations

import math

import pytest
import torch
from torchrl.objectives.value import functional as F

from service.errors import ArgumentError
from service.estimators import _kernels, gae, threads, vtrace
from tests.support.estimators import DTYPES, assert_bitwise, make_batch, torchrl_exact

# (shape, time_dim) the small-call path accepts: [*B, T, 1] with the default time_dim or asked
# for explicitly (the server passes time_dim=-2), time last.
SMALL_LAYOUTS = [((1, 8, 1), None), ((37, 1), None), ((3, 2, 37, 1), None), ((37,), -1),
                 ((4, 37), -1), ((2, 32, 1), -2), ((3, 2, 37, 1), 2), ((37, 1), 0)]  # fmt: skip


@pytest.fixture
def small_calls(monkeypatch) -> list[str]:
    """Records the kernels the small-call path fetches."""
    fetched: list[str] = []
    original = _kernels.get_small

    def get_small(name: str, dtype_name: str):
        fetched.append(name)
        return original(name, dtype_name)

    monkeypatch.setattr(_kernels, "get_small", get_small)
    return fetched


@pytest.mark.parametrize(("shape", "time_dim"), SMALL_LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["auto", "numba"])
def test_small_gae_is_torchrls_bit_for_bit(small_calls, dtype, shape, time_dim, backend) -> None:
    b = make_batch(shape, dtype, seed=len(shape))
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    kw = {} if time_dim is None else {"time_dim": time_dim}
    adv, target = gae(0.97, 0.9, *args, _backend=backend, **kw)
    assert small_calls == ["gae_scalar"]
    ref_adv, ref_target = F.generalized_advantage_estimate(
        torchrl_exact(0.97, dtype), torchrl_exact(0.9, dtype), *args,
        time_dim=-2 if time_dim is None else time_dim,
    )  # fmt: skip
    assert_bitwise(adv, ref_adv)
    assert_bitwise(target, ref_target)
    assert not adv.requires_grad and adv.is_contiguous()


def test_small_gae_without_terminated_reads_done(small_calls) -> None:
    b = make_batch((2, 16, 1), torch.float32, seed=5, p_done=0.3)
    args = (b.state_value, b.next_state_value, b.reward, b.done)
    adv, _ = gae(0.99, 0.95, *args)
    assert small_calls == ["gae_scalar"]
    assert_bitwise(adv, F.generalized_advantage_estimate(0.99, 0.95, *args, b.done)[0])


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"gamma": 0.9}, id="the small path itself"),
        pytest.param({"gamma": 1}, id="int γ"),
        pytest.param({"out": "pair"}, id="out="),
        pytest.param({"average_gae": True}, id="average_gae"),
        pytest.param({"transpose": True}, id="strided input"),
        pytest.param({"float64_reward": True}, id="mixed dtypes"),
    ],
)
def test_other_calls_take_the_checked_path_with_the_same_numbers(small_calls, change) -> None:
    b = make_batch((8, 16, 1), torch.float32, seed=6)
    args = [b.state_value, b.next_state_value, b.reward, b.done, b.terminated]
    kw: dict = {}
    gamma = change.get("gamma", 0.9)
    if change.get("out"):
        kw["out"] = (torch.empty_like(b.reward), torch.empty_like(b.reward))
    if change.get("average_gae"):
        kw["average_gae"] = True
    if change.get("transpose"):
        args = [x.transpose(0, 1).contiguous().transpose(0, 1) for x in args]
        assert not args[0].is_contiguous()
    if change.get("float64_reward"):
        args[2] = args[2].double()
    adv, _ = gae(gamma, 0.8, *args, **kw)
    takes_small_path = change == {"gamma": 0.9}
    assert small_calls == (["gae_scalar"] if takes_small_path else [])
    ref_args = [x.double() if x.is_floating_point() else x for x in args]
    ref = F.generalized_advantage_estimate(
        torch.tensor(float(gamma), dtype=torch.float64), torch.tensor(0.8, dtype=torch.float64),
        *ref_args,
    )[0]  # fmt: skip
    if change.get("average_gae"):
        ref = (ref - ref.mean()) / ref.std().clamp_min(1e-4)
    if not change.get("float64_reward"):
        ref = ref.float()  # float32 data: TorchRL's float32 numbers are within rounding of these
    torch.testing.assert_close(adv, ref, rtol=1e-5, atol=1e-5)


def test_parallel_work_does_not_take_the_small_path(small_calls, monkeypatch) -> None:
    monkeypatch.setattr(
        threads, "_policy", threads.ThreadPolicy(2, parallel_min_elements=0, watch_load=False)
    )
    b = make_batch((4, 16, 1), torch.float32, seed=7)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, _ = gae(0.99, 0.95, *args)
    assert small_calls == []
    assert_bitwise(adv, F.generalized_advantage_estimate(0.99, 0.95, *args)[0])


@pytest.mark.parametrize(
    ("argument", "edit", "message"),
    [
        ("state_value", lambda b: b.state_value.__setitem__((0, 3, 0), math.nan),
         "state_value: expected finite values, got nan at index (0, 3, 0)"),
        ("reward", lambda b: b.reward.__setitem__((1, 0, 0), math.inf),
         "reward: expected finite values, got inf at index (1, 0, 0)"),
        ("terminated", lambda b: (b.terminated.__setitem__((1, 2, 0), True),
                                  b.done.__setitem__((1, 2, 0), False)),
         "terminated: expected terminated ⇒ done, got terminated=True with done=False at index "
         "(1, 2, 0)"),
    ],
)  # fmt: skip
def test_small_gae_refuses_bad_data_by_name(small_calls, argument, edit, message) -> None:
    b = make_batch((2, 8, 1), torch.float32, seed=8, p_done=0.0)
    edit(b)
    with pytest.raises(ArgumentError) as caught:
        gae(0.9, 0.9, b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    assert small_calls == ["gae_scalar"]
    assert caught.value.argument == argument
    assert str(caught.value) == message


@pytest.mark.parametrize(("gamma", "lmbda"), [(1.5, 0.9), (0.9, -0.1), (math.nan, 0.9)])
def test_small_gae_refuses_coefficients_out_of_range(small_calls, gamma, lmbda) -> None:
    b = make_batch((2, 8, 1), torch.float32, seed=9)
    with pytest.raises(ArgumentError, match="expected a value in \\[0, 1\\]"):
        gae(gamma, lmbda, b.state_value, b.next_state_value, b.reward, b.done, b.terminated)


def test_small_gae_with_nan_bootstrap_at_a_termination_is_fine(small_calls) -> None:
    b = make_batch((2, 8, 1), torch.float32, seed=10, p_done=0.0)
    b.done[0, 4, 0] = b.terminated[0, 4, 0] = True
    b.next_state_value[0, 4, 0] = math.nan
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, _ = gae(0.9, 0.9, *args)
    assert small_calls == ["gae_scalar"]
    # TorchRL multiplies the bootstrap by (1 − terminated), so it needs a finite unread value.
    read = (b.state_value, b.next_state_value.nan_to_num(0.0), *args[2:])
    assert_bitwise(adv, F.generalized_advantage_estimate(0.9, 0.9, *read)[0])


# 2 331 elements: a full slice of TORCH_SERIAL_ELEMENTS and a remainder; 64×128 = 4 slices.
@pytest.mark.parametrize("shape", [(7, 333, 1), (64, 128, 1), (1, 8, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_vtrace_serial_exp_is_torchrls_bit_for_bit(dtype, shape) -> None:
    assert math.prod(shape) < threads.policy().parallel_min_elements  # the serial path
    b = make_batch(shape, dtype, seed=11)
    b.log_pi[0, 1, 0] = -math.inf  # ρ = 0
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, vs = vtrace(0.99, b.log_pi, b.log_mu, *args)
    g = torchrl_exact(0.99, dtype)
    ref_adv, ref_vs = F.vtrace_advantage_estimate(g, b.log_pi, b.log_mu, *args)
    assert_bitwise(adv, ref_adv)
    assert_bitwise(vs, ref_vs)


def test_vtrace_serial_path_refuses_bad_log_probs() -> None:
    b = make_batch((4, 600, 1), torch.float32, seed=12)
    b.log_mu[3, 599, 0] = math.inf
    with pytest.raises(ArgumentError) as caught:
        vtrace(0.99, b.log_pi, b.log_mu, b.state_value, b.next_state_value, b.reward, b.done)
    assert str(caught.value) == "log_mu: expected finite values, got inf at index (3, 599, 0)"


@pytest.mark.parametrize(("rho", "c"), [(1.0, 1.0), (1.5, 0.8), (0.7, 2.0)])
@pytest.mark.parametrize("shape", [(1, 8, 1), (8, 64, 1), (37, 1)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_small_vtrace_is_torchrls_bit_for_bit(small_calls, dtype, shape, rho, c) -> None:
    b = make_batch(shape, dtype, seed=13)
    b.log_pi[0, 0] = -math.inf  # ρ = 0
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, vs = vtrace(0.99, b.log_pi, b.log_mu, *args, rho_thresh=rho, c_thresh=c)
    assert small_calls == ["vtrace_scalar"]
    ex = torchrl_exact
    ref_adv, ref_vs = F.vtrace_advantage_estimate(
        ex(0.99, dtype), b.log_pi, b.log_mu, *args, rho_thresh=ex(rho, dtype),
        c_thresh=ex(c, dtype),
    )  # fmt: skip
    assert_bitwise(adv, ref_adv)
    assert_bitwise(vs, ref_vs)


def test_vtrace_above_one_torch_slice_takes_the_checked_path(small_calls) -> None:
    b = make_batch((7, 333, 1), torch.float32, seed=14)
    vtrace(0.99, b.log_pi, b.log_mu, b.state_value, b.next_state_value, b.reward, b.done)
    assert small_calls == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: b.log_mu.__setitem__((1, 5, 0), math.inf),
         "log_mu: expected finite values, got inf at index (1, 5, 0)"),
        (lambda b: b.log_pi.__setitem__((0, 2, 0), math.nan),
         "log_pi: expected finite values or -inf, got nan at index (0, 2, 0)"),
        (lambda b: b.reward.__setitem__((1, 7, 0), math.nan),
         "reward: expected finite values, got nan at index (1, 7, 0)"),
    ],
)  # fmt: skip
def test_small_vtrace_refuses_bad_data_by_name(small_calls, edit, message) -> None:
    b = make_batch((2, 8, 1), torch.float32, seed=15, p_done=0.0)
    edit(b)
    with pytest.raises(ArgumentError) as caught:
        vtrace(0.9, b.log_pi, b.log_mu, b.state_value, b.next_state_value, b.reward, b.done)
    # log-probabilities are refused before the kernel, data found bad by the kernel after it
    assert small_calls == ([] if message.startswith("log_") else ["vtrace_scalar"])
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("knob", "value", "fragment"),
    [("rho_thresh", 0.0, "expected a finite value > 0"),
     ("c_thresh", math.inf, "expected a finite value > 0"),
     ("rho_pg_thresh", -1.0, "expected a finite value > 0"),
     ("lmbda", 1.5, "expected a value in \\[0, 1\\]")],
)  # fmt: skip
def test_small_vtrace_refuses_knobs_as_before(small_calls, knob, value, fragment) -> None:
    b = make_batch((2, 8, 1), torch.float32, seed=16)
    with pytest.raises(ArgumentError, match=fragment) as caught:
        vtrace(0.9, b.log_pi, b.log_mu, b.state_value, b.next_state_value, b.reward, b.done,
               **{knob: value})  # fmt: skip
    assert caught.value.argument == knob
