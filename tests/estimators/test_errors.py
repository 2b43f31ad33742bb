"""Every refusal: a ValueError naming the argument, with what was expected and what was got."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

from service.estimators import gae, td0, td1, td_lambda, vtrace
from tests.support.estimators import make_batch

SHAPE = (3, 8, 1)


def _inputs(dtype: torch.dtype = torch.float32) -> dict:
    b = make_batch(SHAPE, dtype, seed=0, p_done=0.3)
    return {
        "state_value": b.state_value,
        "next_state_value": b.next_state_value,
        "reward": b.reward,
        "done": b.done,
        "terminated": b.terminated,
        "log_pi": b.log_pi,
        "log_mu": b.log_mu,
    }


def _call(name: str, backend: str = "auto", **over) -> None:
    kw = {**_inputs(), **over}
    common = {
        k: kw.pop(k) for k in ("state_value", "next_state_value", "reward", "done", "terminated")
    }
    extra = {k: v for k, v in kw.items() if k not in ("log_pi", "log_mu")}
    gamma = extra.pop("gamma", 0.9)
    if name == "gae":
        gae(gamma, extra.pop("lmbda", 0.9), **common, **extra, _backend=backend)
    elif name == "td_lambda":
        td_lambda(gamma, extra.pop("lmbda", 0.9), **common, **extra, _backend=backend)
    elif name == "td1":
        td1(gamma, **common, **extra, _backend=backend)
    elif name == "td0":
        td0(gamma, **common, **extra, _backend=backend)
    else:
        vtrace(gamma, kw["log_pi"], kw["log_mu"], **common, **extra, _backend=backend)


ESTIMATORS = ["gae", "td_lambda", "td1", "td0", "vtrace"]
WITH_LAMBDA = ["gae", "td_lambda", "vtrace"]


def _raises(fn: Callable[[], None], *fragments: str) -> None:
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value)
    for fragment in ("expected", "got", *fragments):
        assert fragment in msg, msg


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("arg", ["next_state_value", "reward", "done", "terminated"])
def test_shape_mismatch_is_not_broadcast(name: str, arg: str) -> None:
    x = _inputs()[arg]
    _raises(lambda: _call(name, **{arg: x[:, :1]}), arg, "(3, 8, 1)", "(3, 1, 1)")


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("arg", ["state_value", "next_state_value"])
def test_non_floating_values(name: str, arg: str) -> None:
    """Integer values truncate silently in TorchRL (GAE and TD(λ) write into next_state_value's
    dtype); only the reward is promoted (see test_torchrl_inputs)."""
    x = torch.ones(SHAPE, dtype=torch.int64)
    _raises(lambda: _call(name, **{arg: x}), arg, "floating", "torch.int64")


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("arg", ["done", "terminated"])
def test_non_bool_flags(name: str, arg: str) -> None:
    flag = torch.zeros(SHAPE)
    _raises(lambda: _call(name, **{arg: flag}), arg, "torch.bool", "torch.float32")


def test_non_tensor_input() -> None:
    _raises(lambda: _call("gae", reward=[1.0, 2.0]), "reward", "torch.Tensor", "list")


def test_device_mismatch() -> None:
    r = torch.empty(SHAPE, device="meta")
    _raises(lambda: _call("gae", reward=r), "reward", "device", "meta")


def test_vtrace_log_prob_shape() -> None:
    kw = _inputs()
    _raises(
        lambda: vtrace(
            0.9,
            kw["log_pi"][0],
            kw["log_mu"],
            kw["state_value"],
            kw["next_state_value"],
            kw["reward"],
            kw["done"],
        ),
        "log_pi",
        "(8, 1)",
    )


@pytest.mark.parametrize("name", ESTIMATORS)
def test_terminated_without_done(name: str, backend: str) -> None:
    done = torch.zeros(SHAPE, dtype=torch.bool)
    term = done.clone()
    term[1, 4, 0] = True
    _raises(
        lambda: _call(name, backend if name != "td0" else "auto", done=done, terminated=term),
        "terminated",
        "done",
        "(1, 4, 0)",
    )


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("bad", [1.5, -0.1, math.nan, math.inf])
def test_gamma_out_of_range(name: str, bad: float) -> None:
    _raises(lambda: _call(name, gamma=bad), "gamma", "[0, 1]", str(bad))


@pytest.mark.parametrize("name", WITH_LAMBDA)
@pytest.mark.parametrize("bad", [1.01, -1.0, math.nan])
def test_lmbda_out_of_range(name: str, bad: float) -> None:
    _raises(lambda: _call(name, lmbda=bad), "lmbda", "[0, 1]", str(bad))


@pytest.mark.parametrize("name", WITH_LAMBDA)
@pytest.mark.parametrize("coef", ["gamma", "lmbda"])
def test_per_step_coef_out_of_range(name: str, coef: str, backend: str) -> None:
    c = torch.full(SHAPE, 0.5)
    c[2, 3, 0] = 1.25
    _raises(lambda: _call(name, backend, **{coef: c}), coef, "[0, 1]", "1.25", "(2, 3, 0)")


@pytest.mark.parametrize("coef", ["gamma", "lmbda"])
def test_per_step_coef_bad_shape_dtype_type(coef: str) -> None:
    _raises(lambda: _call("gae", **{coef: torch.full((3, 8), 0.5)}), coef, "(3, 8, 1)", "(3, 8)")
    _raises(lambda: _call("gae", **{coef: torch.ones(SHAPE, dtype=torch.int64)}), coef, "int64")
    _raises(lambda: _call("gae", **{coef: True}), coef, "bool")
    _raises(lambda: _call("gae", **{coef: "0.9"}), coef, "str")


@pytest.mark.parametrize("arg", ["rho_thresh", "c_thresh", "rho_pg_thresh"])
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_vtrace_thresholds(arg: str, bad: float) -> None:
    _raises(lambda: _call("vtrace", **{arg: bad}), arg, "> 0", str(bad))


def test_vtrace_threshold_tensor_shape() -> None:
    _raises(lambda: _call("vtrace", rho_thresh=torch.ones(2)), "rho_thresh", "0-d", "(2,)")
    _raises(lambda: _call("vtrace", c_thresh=torch.ones(3, 8)), "c_thresh", "(3, 8, 1)", "(3, 8)")


@pytest.mark.parametrize("arg", ["rho_thresh", "c_thresh", "rho_pg_thresh"])
@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_vtrace_per_step_thresholds(arg: str, bad: float, backend: str) -> None:
    thresh = torch.full(SHAPE, 1.5)
    thresh[0, 5, 0] = bad
    _raises(lambda: _call("vtrace", backend, **{arg: thresh}), arg, "> 0", str(bad), "(0, 5, 0)")
    one_element = torch.tensor([bad])
    _raises(lambda: _call("vtrace", backend, **{arg: one_element}), arg, "> 0", str(bad))


@pytest.mark.parametrize("name", ESTIMATORS)
@pytest.mark.parametrize("arg", ["state_value", "reward", "next_state_value"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values(name: str, arg: str, bad: float, backend: str) -> None:
    kw = _inputs()
    x = kw[arg].clone()
    # step (0, 4) is neither done nor terminated, so every value there enters the result
    assert not kw["done"][0, 4, 0]
    x[0, 4, 0] = bad
    _raises(
        lambda: _call(name, backend if name != "td0" else "auto", **{arg: x}),
        arg,
        "finite",
        str(bad),
        "(0, 4, 0)",
    )


@pytest.mark.parametrize(
    ("arg", "bad"),
    [("log_mu", -math.inf), ("log_mu", math.inf), ("log_mu", math.nan), ("log_pi", math.inf),
     ("log_pi", math.nan)],
)  # fmt: skip
def test_non_finite_log_probs(arg: str, bad: float, backend: str) -> None:
    """log_pi = -inf is accepted (ρ = 0, as TorchRL); the behaviour policy took the action, so
    log_mu = -inf is corrupt data (TorchRL silently clips ρ = inf to rho_thresh)."""
    kw = _inputs()
    x = kw[arg].clone()
    x[2, 7, 0] = bad
    _raises(lambda: _call("vtrace", backend, **{arg: x}), arg, "finite", str(bad), "(2, 7, 0)")


@pytest.mark.parametrize("kind", ["scalar", "per_step"])
def test_non_finite_log_probs_general_kernel(kind: str, backend: str) -> None:
    """The same refusals where the general kernel runs (per-step γ or thresholds)."""
    kw = _inputs()
    x = kw["log_mu"].clone()
    x[1, 2, 0] = math.nan
    per_step = torch.full(SHAPE, 0.9)
    over = {"gamma": per_step} if kind == "per_step" else {"rho_thresh": per_step}
    _raises(lambda: _call("vtrace", backend, log_mu=x, **over), "log_mu", "nan", "(1, 2, 0)")


@pytest.mark.parametrize("name", ESTIMATORS)
def test_ambiguous_2d_default_time_dim(name: str) -> None:
    kw = {k: v[..., 0] for k, v in _inputs().items()}  # [B, T]
    _raises(lambda: _call(name, **kw), "time_dim", "ambiguous", "(3, 8)", "time_dim=-1")


def test_1d_needs_explicit_time_dim() -> None:
    kw = {k: v[0, :, 0] for k, v in _inputs().items()}
    _raises(lambda: _call("gae", **kw), "time_dim", "(8,)")


@pytest.mark.parametrize("bad", [3, -4, True])
def test_time_dim_out_of_range(bad: int) -> None:
    _raises(lambda: _call("gae", time_dim=bad), "time_dim")


@pytest.mark.parametrize("name", ["td_lambda", "td1"])
def test_rolling_gamma_false_needs_a_per_step_coefficient(name: str) -> None:
    """As in TorchRL, which raises: with scalars there is no per-step γ to carry forward."""
    one_element = torch.tensor([0.9])
    for gamma in (0.9, one_element, torch.full((3, 1, 1), 0.9)):
        _raises(
            lambda g=gamma: _call(name, gamma=g, rolling_gamma=False), "rolling_gamma", "per-step"
        )
    _raises(lambda: _call(name, rolling_gamma="no"), "rolling_gamma", "'no'")


def test_td1_rolling_gamma_false_needs_done_at_the_end() -> None:
    """TorchRL 0.14.1's td1_return_estimate(rolling_gamma=False) starts its loop from 0: a row the
    batch cuts loses its bootstrap silently. Refused; td_lambda(λ=1) bootstraps it."""
    gamma = torch.full(SHAPE, 0.9)
    done = torch.zeros(SHAPE, dtype=torch.bool)
    done[0, -1] = done[2, -1] = True
    _raises(
        lambda: _call("td1", gamma=gamma, rolling_gamma=False, done=done, terminated=None),
        "rolling_gamma", "done at the last step", "(1,", "td_lambda",
    )  # fmt: skip
    done[1, -1] = True
    _call("td1", gamma=gamma, rolling_gamma=False, done=done, terminated=None)
    _call("td_lambda", gamma=gamma, lmbda=1.0, rolling_gamma=False, done=done, terminated=None)


@pytest.mark.parametrize("coef", ["gamma", "lmbda"])
def test_coef_one_element_of_higher_rank(coef: str) -> None:
    """A one-element tensor of more dims than the inputs would broadcast TorchRL's outputs to
    a larger shape."""
    x = torch.full((1, 1, 1, 1), 0.9)
    _raises(lambda: _call("gae", **{coef: x}), coef, "(1, 1, 1, 1)", "one-element")


@pytest.mark.parametrize(
    ("name", "option"),
    [("gae", "average_gae"), ("vtrace", "average_adv"), ("td0", "average_rewards"),
     ("td1", "average_rewards"), ("td_lambda", "average_rewards")],
)  # fmt: skip
def test_standardising_one_element(name: str, option: str) -> None:
    kw = {k: v[:1, :1] for k, v in _inputs().items()}
    kw["done"] = kw["terminated"] = torch.zeros((1, 1, 1), dtype=torch.bool)
    _raises(lambda: _call(name, **kw, **{option: True}), option, "2 elements")


def test_backend_switch_errors() -> None:
    _raises(lambda: _call("gae", backend="cuda"), "_backend", "'cuda'")
    v = _inputs()["state_value"].requires_grad_()
    _raises(lambda: _call("gae", backend="numba", state_value=v, differentiable=True), "_backend")
    kw = {k: (v.half() if v.is_floating_point() else v) for k, v in _inputs().items()}
    _raises(lambda: _call("gae", backend="numba", **kw), "_backend", "float16")
