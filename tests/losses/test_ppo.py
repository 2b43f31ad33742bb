"""ppo_loss / ppo_clip_loss against TorchRL 0.14.1's PPOLoss / ClipPPOLoss (values and grads)."""

from __future__ import annotations

import pytest
import torch
from torchrl.objectives import ClipPPOLoss, PPOLoss

from service.losses import ppo_clip_loss, ppo_loss
from tests.support.losses import (
    KINDS,
    TOL,
    assert_grads_close,
    build_loss,
    make_setup,
    torchrl_total,
)

CLIP_CASES = [
    {},
    {"clip_epsilon": (0.1, 0.3), "loss_critic_type": "l2", "normalize_advantage": True},
    {"loss_critic_type": "l1", "clip_value": 0.1, "entropy_bonus": False},
    {"clip_value": True, "critic_coeff": 0.5, "entropy_coeff": 0.02, "clip_epsilon": 0.1},
    {"critic_coeff": 0.0, "normalize_advantage": True},
]
PLAIN_CASES = [
    {},
    {"loss_critic_type": "l2", "normalize_advantage": True, "clip_value": 0.05},
    {"entropy_bonus": False, "loss_critic_type": "l1", "critic_coeff": 2.0},
]


def _ours(fn, setup, td=None, **kw):
    td = setup.td if td is None else td
    return fn(
        setup.our_dist(td),
        td["action"],
        td["action_log_prob"],
        td["advantage"],
        setup.our_value(td),
        td["value_target"],
        old_state_value=td["state_value"],
        **kw,
    )


def _compare(setup, module, fn, kw, seed=123):
    torch.manual_seed(seed)
    theirs = module(setup.td.clone())
    theirs_grads = setup.grads(torchrl_total(theirs))
    torch.manual_seed(seed)
    ours = _ours(fn, setup, **kw)
    ours_grads = setup.grads(ours["loss"])
    assert set(ours) == set(theirs.keys()) | {"loss"}
    for key, value in theirs.items():
        assert ours[key].shape == (), key
        torch.testing.assert_close(ours[key], value.detach().reshape(()), **TOL, msg=key)
    torch.testing.assert_close(ours["loss"], torchrl_total(theirs), **TOL)
    assert_grads_close(ours_grads, theirs_grads)
    assert any(g.abs().sum() > 0 for g in ours_grads)
    return ours


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", range(len(CLIP_CASES)))
def test_clip_ppo_matches_torchrl(kind, case):
    kw = CLIP_CASES[case]
    setup = make_setup(kind, seed=case)
    module = build_loss(ClipPPOLoss, setup.actor, setup.critic, **kw)
    ours = _compare(setup, module, ppo_clip_loss, kw)
    if case == 0:
        assert 0 < ours["clip_fraction"] < 1  # the data exercises both branches


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", range(len(PLAIN_CASES)))
def test_ppo_matches_torchrl(kind, case):
    kw = PLAIN_CASES[case]
    setup = make_setup(kind, seed=10 + case)
    module = build_loss(PPOLoss, setup.actor, setup.critic, **kw)
    _compare(setup, module, ppo_loss, kw)


@pytest.mark.parametrize("kind", ["categorical", "tanh_normal"])
def test_clip_ppo_batch_time_layout(kind):
    """[B, T] data: losses equal TorchRL's; ESS / explained_variance are pooled scalars."""
    setup = make_setup(kind, batch=(4, 6), seed=3)
    kw = {"clip_value": 0.1, "normalize_advantage": True}
    module = build_loss(ClipPPOLoss, setup.actor, setup.critic, **kw)
    torch.manual_seed(0)
    theirs = module(setup.td.clone())
    assert theirs["ESS"].shape == (6,)  # TorchRL: one ESS per time step
    torch.manual_seed(0)
    ours = _ours(ppo_clip_loss, setup, **kw)
    for key in theirs.keys():  # noqa: SIM118  (iterating a TensorDict walks its batch)
        if key in ("ESS", "explained_variance"):
            continue
        torch.testing.assert_close(ours[key], theirs[key].detach(), **TOL, msg=key)
    flat = setup.td.reshape(-1)
    torch.manual_seed(0)
    theirs_flat = module(flat.clone())
    for key in ("ESS", "explained_variance"):
        torch.testing.assert_close(ours[key], theirs_flat[key].reshape(()), **TOL, msg=key)
    assert all(v.shape == () for v in ours.values())


def test_ess_formula_and_scalar_outputs():
    setup = make_setup("normal", seed=4)
    out = _ours(ppo_clip_loss, setup)
    w = (setup.our_dist().log_prob(setup.td["action"]) - setup.td["action_log_prob"]).exp()
    torch.testing.assert_close(out["ESS"], (w.sum() ** 2 / (w**2).sum() / w.numel()).detach())
    expected = out["loss_objective"] + out["loss_entropy"] + out["loss_critic"]
    torch.testing.assert_close(out["loss"], expected, **TOL)


def test_tanh_normal_entropy_is_reproducible_with_a_generator():
    setup = make_setup("tanh_normal", seed=5)
    a = _ours(
        ppo_clip_loss, setup, generator=torch.Generator().manual_seed(7), samples_mc_entropy=3
    )
    b = _ours(
        ppo_clip_loss, setup, generator=torch.Generator().manual_seed(7), samples_mc_entropy=3
    )
    torch.testing.assert_close(a["entropy"], b["entropy"], rtol=0, atol=0)
    torch.testing.assert_close(a["loss"], b["loss"], rtol=0, atol=0)


def test_ppo_does_not_mutate_inputs():
    setup = make_setup("categorical", seed=6)
    td = setup.td
    before = {k: v.clone() for k, v in td.items()}
    versions = {k: v._version for k, v in td.items()}
    _ours(ppo_clip_loss, setup, normalize_advantage=True, clip_value=0.1)["loss"].backward()
    for k, v in td.items():
        assert torch.equal(v, before[k]), k
        assert v._version == versions[k], k
