"""Properties relating the estimators to each other and to themselves."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchrl.objectives.value import functional as F

from service.estimators import gae, td1, td_lambda, vtrace
from tests.support.estimators import assert_close, make_batch


def _chained(shape: tuple[int, ...], seed: int):
    """[B, T, 1] trajectories whose next values chain within episodes.

    next_state_value[t] == state_value[t + 1] unless step t is done; a truncation bootstraps
    from a fresh value, a termination from NaN (legitimate: it never enters a result).
    """
    b = make_batch(shape, torch.float64, seed=seed, p_done=0.15)
    nxt = torch.cat([b.state_value[:, 1:], b.next_state_value[:, -1:]], dim=1)
    nxt = torch.where(b.done, b.next_state_value, nxt)
    b.next_state_value = torch.where(b.terminated, float("nan"), nxt)
    return b


def test_gae_target_is_td_lambda_return_when_values_chain(backend: str) -> None:
    b = _chained((8, 50, 1), seed=1)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    _, target = gae(0.97, 0.8, *args, _backend=backend)
    _, ret = td_lambda(0.97, 0.8, *args, _backend=backend)
    assert_close(target, ret)


def test_on_policy_vtrace_is_td1_when_values_chain(backend: str) -> None:
    b = _chained((8, 50, 1), seed=2)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, vs = vtrace(0.97, b.log_pi, b.log_pi, *args, 1.0, 1.0, _backend=backend)
    td_adv, ret = td1(0.97, *args, _backend=backend)
    assert_close(vs, ret)
    assert_close(adv, td_adv)


def test_on_policy_vtrace_lambda_is_gae_when_values_chain(backend: str) -> None:
    """rlax's q bootstrap makes on-policy V-trace(λ) exactly GAE(λ)."""
    b = _chained((8, 50, 1), seed=3)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    adv, vs = vtrace(0.97, b.log_mu, b.log_mu, *args, lmbda=0.7, _backend=backend)
    gae_adv, target = gae(0.97, 0.7, *args, _backend=backend)
    assert_close(vs, target)
    assert_close(adv, gae_adv)


def _split_equal(fn, b, cut: int) -> None:
    """Cutting every row after step ``cut`` (done there) changes nothing."""
    b.done[:, cut] = True
    tensors = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    whole = fn(*tensors)
    first = fn(*(x[:, : cut + 1] for x in tensors))
    second = fn(*(x[:, cut + 1 :] for x in tensors))
    for w, a, c in zip(whole, first, second, strict=True):
        assert_close(w, torch.cat([a, c], dim=1))


def test_split_at_episode_boundary(backend: str) -> None:
    b = make_batch((5, 40, 1), torch.float64, seed=4)
    _split_equal(lambda *x: gae(0.9, 0.8, *x, _backend=backend), b, 17)
    _split_equal(lambda *x: td_lambda(0.9, 0.8, *x, _backend=backend), b, 17)
    _split_equal(lambda *x: td1(0.9, *x, _backend=backend), b, 17)
    lp = b.log_pi[:, :1].expand(5, 40, 1).contiguous()  # any per-row policy ratio
    lq = b.log_mu[:, :1].expand(5, 40, 1).contiguous()
    _split_equal(lambda *x: vtrace(0.9, lp[:, : x[0].shape[1]], lq[:, : x[0].shape[1]], *x,
                                   lmbda=0.9, _backend=backend), b, 17)  # fmt: skip


def test_split_batch_rows(backend: str) -> None:
    b = make_batch((6, 30, 1), torch.float64, seed=5)
    tensors = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    whole = gae(0.9, 0.8, *tensors, _backend=backend)
    parts = [gae(0.9, 0.8, *(x[i : i + 2] for x in tensors), _backend=backend) for i in (0, 2, 4)]
    assert_close(whole[0], torch.cat([p[0] for p in parts]))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 4),
    steps=st.integers(1, 25),
    p_done=st.floats(0.0, 1.0),
    gamma=st.floats(0.0, 1.0),
    lmbda=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
    use_numba=st.booleans(),
)
def test_gae_matches_torchrl_hypothesis(
    batch, steps, p_done, gamma, lmbda, seed, use_numba
) -> None:
    b = make_batch((batch, steps, 1), torch.float64, seed=seed, p_done=p_done)
    args = (b.state_value, b.next_state_value, b.reward, b.done, b.terminated)
    ours = gae(gamma, lmbda, *args, _backend="numba" if use_numba else "torch")
    g64 = torch.tensor(gamma, dtype=torch.float64)
    ref = F.generalized_advantage_estimate(g64, torch.tensor(lmbda, dtype=torch.float64), *args)
    assert_close(ours[0], ref[0])
    assert_close(ours[1], ref[1])
