"""A TorchRL PPO loop on CartPole (gymnasium through TorchRL's GymEnv) trained twice from the
same seed, with TorchRL's GAE and with `RemoteGAE` on a real server: the advantages of every
batch agree to float32 rounding, and the learning curves are the same."""

from __future__ import annotations

import math

import torch
from advantage_client import AdvantageClient
from advantage_client.torchrl import RemoteGAE
from torchrl.objectives.value import GAE

from tests.support.torchrl_ppo import run_ppo


def test_ppo_learns_the_same_with_the_remote_estimator(grpc_target: str) -> None:
    local = run_ppo(lambda loss: GAE(gamma=0.99, lmbda=0.95, value_network=loss.critic_network))
    with AdvantageClient(grpc_target, timeout=30) as client:
        remote = run_ppo(
            lambda loss: RemoteGAE(
                client, gamma=0.99, lmbda=0.95, value_network=loss.critic_network
            )
        )
    assert len(remote.advantages) == len(local.advantages) == 6
    for got, expected in zip(remote.advantages, local.advantages, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    # Same advantages, same updates: the same episodes, so the same learning curve.
    assert remote.returns == local.returns
    assert all(not math.isnan(r) for r in local.returns)
    assert local.returns[-1] > local.returns[0]  # it learns (CartPole's return grows)
