"""a2c_loss / reinforce_loss against TorchRL 0.14.1's A2CLoss / ReinforceLoss."""

from __future__ import annotations

import pytest
import torch
from torchrl.objectives import A2CLoss, ReinforceLoss

from service.losses import a2c_loss, reinforce_loss
from tests.support.losses import (
    KINDS,
    TOL,
    assert_grads_close,
    build_loss,
    make_setup,
    torchrl_total,
)

A2C_CASES = [
    {},
    {"loss_critic_type": "l2", "clip_value": 0.1, "entropy_coeff": 0.05},
    {"loss_critic_type": "l1", "entropy_bonus": False, "critic_coeff": 0.5},
    {"entropy_coeff": 0.0, "critic_coeff": None},
]
REINFORCE_CASES = [{}, {"loss_critic_type": "l2", "clip_value": 0.1}, {"loss_critic_type": "l1"}]


def _check(setup, theirs, theirs_grads, ours):
    assert set(ours) == set(theirs.keys()) | {"loss"}
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value.detach().reshape(()), **TOL, msg=key)
    torch.testing.assert_close(ours["loss"], torchrl_total(theirs).detach(), **TOL)
    assert_grads_close(setup.grads(ours["loss"]), theirs_grads)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", range(len(A2C_CASES)))
def test_a2c_matches_torchrl(kind, case):
    kw = A2C_CASES[case]
    setup = make_setup(kind, seed=30 + case)
    module = build_loss(A2CLoss, setup.actor, setup.critic, **kw)
    torch.manual_seed(1)
    theirs = module(setup.td.clone())
    theirs_grads = setup.grads(torchrl_total(theirs))
    td = setup.td
    torch.manual_seed(1)
    ours = a2c_loss(
        setup.our_dist(),
        td["action"],
        td["advantage"],
        setup.our_value(),
        td["value_target"],
        old_state_value=td["state_value"],
        **kw,
    )
    _check(setup, theirs, theirs_grads, ours)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", range(len(REINFORCE_CASES)))
def test_reinforce_matches_torchrl(kind, case):
    kw = REINFORCE_CASES[case]
    setup = make_setup(kind, seed=40 + case)
    module = build_loss(ReinforceLoss, setup.actor, setup.critic, **kw)
    theirs = module(setup.td.clone())
    theirs_grads = setup.grads(torchrl_total(theirs))
    td = setup.td
    ours = reinforce_loss(
        setup.our_dist(),
        td["action"],
        td["advantage"],
        setup.our_value(),
        td["value_target"],
        old_state_value=td["state_value"],
        **kw,
    )
    _check(setup, theirs, theirs_grads, ours)


def test_reinforce_does_not_mutate_its_inputs():
    setup = make_setup("normal", seed=50)
    td = setup.td
    advantage = td["advantage"].clone().requires_grad_(True)  # detached inside, untouched
    inputs = {
        "action": td["action"],
        "advantage": advantage,
        "state_value": setup.our_value(),
        "value_target": td["value_target"],
        "old_state_value": td["state_value"],
    }
    dist = setup.our_dist()
    loc_before = dist.base_dist.loc.detach().clone()
    snapshot = {k: (v.detach().clone(), v._version, v.requires_grad) for k, v in inputs.items()}
    out = reinforce_loss(dist, **inputs, clip_value=0.1, loss_critic_type="l2")
    out["loss"].backward()
    for k, v in inputs.items():
        value, version, requires_grad = snapshot[k]
        assert torch.equal(v.detach(), value), k
        assert v._version == version, k
        assert v.requires_grad == requires_grad, k
    assert torch.equal(dist.base_dist.loc.detach(), loc_before)
    assert advantage.grad is None  # the advantage is a constant for the actor loss
    # calling twice gives the same numbers (no hidden state)
    again = reinforce_loss(dist, **inputs, clip_value=0.1, loss_critic_type="l2")
    torch.testing.assert_close(again["loss"], out["loss"], rtol=0, atol=0)
