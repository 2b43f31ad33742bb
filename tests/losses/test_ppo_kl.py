"""ppo_kl_loss against TorchRL 0.14.1's KLPENPPOLoss, including the beta adaptation sequence."""

from __future__ import annotations

import pytest
import torch
from torchrl.objectives import KLPENPPOLoss

from service.losses import ppo_kl_loss
from tests.support.losses import F64, TOL, assert_grads_close, build_loss, make_setup, torchrl_total

SCALES = [0.3, 0.3, 0.0, 0.0, 0.0, 0.05, 0.3]


def _ours(setup, beta, **kw):
    td = setup.td
    return ppo_kl_loss(
        setup.our_dist(),
        td["action"],
        td["action_log_prob"],
        td["advantage"],
        setup.our_value(),
        td["value_target"],
        behaviour_dist=setup.our_dist(stored=True),
        beta=beta,
        old_state_value=td["state_value"],
        **kw,
    )


@pytest.mark.parametrize("kind", ["categorical", "normal", "tanh_normal_bounded"])
def test_beta_sequence_matches_torchrl(kind):
    setup = make_setup(kind, seed=21)
    kw = {"dtarg": 0.01, "loss_critic_type": "l2", "clip_value": 0.2}
    module = build_loss(KLPENPPOLoss, setup.actor, setup.critic, beta=1.0, **kw)
    gen = torch.Generator().manual_seed(5)
    noise = {
        k: torch.randn(v.shape, dtype=F64, generator=gen) for k, v in setup.behaviour_state.items()
    }
    beta = 1.0
    moves = []
    for step, scale in enumerate(SCALES):
        with torch.no_grad():
            state = {k: v + scale * noise[k] for k, v in setup.behaviour_state.items()}
            setup.actor.load_state_dict(state)
        torch.manual_seed(step)
        theirs = module(setup.td.clone())
        theirs_grads = setup.grads(torchrl_total(theirs))
        torch.manual_seed(step)
        ours = _ours(setup, beta, **kw)
        new_beta = float(ours["beta"])
        # values: the pre-update beta, as TorchRL's loss value
        for key, value in theirs.items():
            value = value.detach().mean() if key == "kl" else value.detach().reshape(())
            torch.testing.assert_close(ours[key], value, **TOL, msg=key)
        torch.testing.assert_close(ours["loss"], torchrl_total(theirs).detach(), **TOL)
        assert new_beta == float(module.beta)
        ours_grads = setup.grads(ours["loss"])
        if new_beta == beta:
            assert_grads_close(ours_grads, theirs_grads)
        else:
            # TorchRL 0.14.1 mutates its beta buffer in place after using it: its gradient is
            # the gradient of the loss at the *updated* beta. Ours is the gradient of the value.
            torch.manual_seed(step)
            at_new = setup.grads(_ours(setup, new_beta, **kw)["loss"])
            assert_grads_close(at_new, theirs_grads)
            if float(ours["kl"]) > 1e-3:  # at KL = 0 the penalty has no gradient anyway
                assert any(
                    (a - b).abs().max() > 1e-6
                    for a, b in zip(ours_grads, theirs_grads, strict=True)
                )
        moves.append((new_beta > beta) - (new_beta < beta))
        beta = new_beta
    assert 1 in moves and -1 in moves


def test_beta_rule_is_pure_and_explicit():
    setup = make_setup("normal", seed=22)
    big = _ours(setup, 3.0, dtarg=1e-6)
    small = _ours(setup, 3.0, dtarg=1e6)
    band = _ours(setup, 3.0, dtarg=float(big["kl"]))
    assert float(big["beta"]) == 6.0 and float(small["beta"]) == 1.5
    assert float(band["beta"]) == 3.0
    assert _ours(setup, torch.tensor(2.0), increment=3.0, dtarg=0.0)["beta"] == 6.0
