"""Contract checks: ValueError naming the argument, with expected and actual."""

from __future__ import annotations

import pytest
import torch

from service.distributions import make_distribution
from service.losses import (
    a2c_loss,
    impala_loss,
    ppo_clip_loss,
    ppo_kl_loss,
    ppo_loss,
    reinforce_loss,
)

N = 6


def _inputs(dtype=torch.float64):
    dist = make_distribution("categorical", {"logits": torch.zeros(N, 3, dtype=dtype)})
    col = torch.zeros(N, 1, dtype=dtype)
    return {
        "dist": dist,
        "action": torch.zeros(N, dtype=torch.long),
        "sample_log_prob": torch.zeros(N, dtype=dtype),
        "advantage": col,
        "state_value": col.clone(),
        "value_target": col.clone(),
    }


@pytest.mark.parametrize("fn", [ppo_loss, ppo_clip_loss])
@pytest.mark.parametrize(
    "change,match",
    [
        ({"advantage": torch.zeros(N, dtype=torch.float64)}, r"advantage: expected shape \(6, 1\)"),
        ({"advantage": torch.zeros(N, 1, dtype=torch.float32)}, "sample_log_prob: expected dtype"),
        (
            {"sample_log_prob": torch.zeros(N, 1, dtype=torch.float64)},
            "sample_log_prob: expected shape",
        ),
        (
            {"sample_log_prob": torch.zeros(N, dtype=torch.float32)},
            "sample_log_prob: expected dtype",
        ),
        ({"sample_log_prob": torch.zeros(N, dtype=torch.float64, requires_grad=True)}, "grad"),
        ({"state_value": torch.zeros(N, dtype=torch.float64)}, "state_value: expected shape"),
        ({"state_value": None}, "state_value: required"),
        ({"value_target": None}, "value_target: required"),
        ({"action": torch.zeros(N, 1, dtype=torch.long)}, "action: expected shape"),
        ({"loss_critic_type": "huber"}, "loss_critic_type"),
        ({"clip_value": 0.1}, "old_state_value: required"),
        ({"entropy_coeff": -1.0}, "entropy_coeff"),
        ({"dist": "logits"}, "dist"),
    ],
)
def test_ppo_contracts(fn, change, match):
    kw = _inputs()
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        fn(**kw)


@pytest.mark.parametrize(
    "clip_epsilon,clip_value,match",
    [(1.5, None, "clip_epsilon"), ((0.1,), None, "clip_epsilon"), ((0.1, 0.2), True, "clip_value")],
)
def test_clip_epsilon_contracts(clip_epsilon, clip_value, match):
    with pytest.raises(ValueError, match=match):
        ppo_clip_loss(**_inputs(), clip_epsilon=clip_epsilon, clip_value=clip_value)


def test_critic_can_be_switched_off():
    kw = _inputs()
    kw.update(state_value=None, value_target=None)
    out = ppo_clip_loss(**kw, critic_coeff=None)
    assert "loss_critic" not in out and "explained_variance" not in out


def test_kl_contracts():
    kw = _inputs()
    beh = make_distribution("categorical", {"logits": torch.zeros(N, 3, dtype=torch.float64)})
    with pytest.raises(ValueError, match="increment"):
        ppo_kl_loss(**kw, behaviour_dist=beh, increment=0.5)
    with pytest.raises(ValueError, match="decrement"):
        ppo_kl_loss(**kw, behaviour_dist=beh, decrement=1.5)
    with pytest.raises(ValueError, match="beta"):
        ppo_kl_loss(**kw, behaviour_dist=beh, beta=-1.0)
    other = make_distribution("categorical", {"logits": torch.zeros(N - 1, 3, dtype=torch.float64)})
    with pytest.raises(ValueError, match="behaviour_dist"):
        ppo_kl_loss(**kw, behaviour_dist=other)


def test_a2c_and_reinforce_contracts():
    kw = _inputs()
    del kw["sample_log_prob"]
    with pytest.raises(ValueError, match="value_target: expected shape"):
        a2c_loss(**{**kw, "value_target": torch.zeros(N, 2, dtype=torch.float64)})
    with pytest.raises(ValueError, match="clip_value"):
        a2c_loss(**kw, clip_value=True)
    with pytest.raises(ValueError, match="state_value: required"):
        reinforce_loss(**{**kw, "state_value": None})
    with pytest.raises(ValueError, match="advantage: expected a floating"):
        reinforce_loss(**{**kw, "advantage": torch.zeros(N, 1, dtype=torch.long)})


def _impala_inputs(B=2, T=4):
    dist = make_distribution("categorical", {"logits": torch.zeros(B, T, 3, dtype=torch.float64)})
    col = torch.zeros(B, T, 1, dtype=torch.float64)
    return {
        "dist": dist,
        "action": torch.zeros(B, T, dtype=torch.long),
        "sample_log_prob": torch.zeros(B, T, dtype=torch.float64),
        "state_value": col,
        "next_state_value": col.clone(),
        "reward": col.clone(),
        "done": torch.zeros(B, T, 1, dtype=torch.bool),
    }


@pytest.mark.parametrize(
    "change,match",
    [
        ({"reward": torch.zeros(2, 4, dtype=torch.float64)}, r"reward: expected shape \(2, 4, 1\)"),
        ({"done": torch.zeros(2, 4, 1)}, "done: expected dtype torch.bool"),
        ({"next_state_value": torch.zeros(2, 4, 1)}, "next_state_value: expected dtype"),
        ({"gamma": 1.5}, "gamma"),
        ({"lmbda": -0.1}, "lmbda"),
        ({"rho_thresh": 0.0}, "rho_thresh"),
        ({"rho_pg_thresh": -1.0}, "rho_pg_thresh"),
        ({"terminated": torch.ones(2, 4, 1, dtype=torch.bool)}, "terminated"),
        (
            {"reward": torch.full((2, 4, 1), float("inf"), dtype=torch.float64)},
            "reward: expected finite",
        ),
        ({"weight": torch.ones(2, 4, dtype=torch.float64)}, "weight"),
    ],
)
def test_impala_contracts(change, match):
    kw = _impala_inputs()
    kw.update(change)
    with pytest.raises(ValueError, match=match):
        impala_loss(**kw)
