"""A small TorchRL PPO loop on gymnasium's CartPole (through TorchRL's `GymEnv`), run once with a
local estimator and once with a remote one to compare them batch by batch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tensordict.nn import TensorDictModule
from torch import nn
from torch.distributions import Categorical
from torchrl.collectors import Collector
from torchrl.envs import GymEnv, RewardSum, TransformedEnv
from torchrl.modules import ProbabilisticActor, ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value import ValueEstimatorBase


@dataclass
class PPORun:
    """What one run recorded: each batch's advantages (before the updates) and the mean return
    of the episodes that ended in each batch (the learning curve)."""

    advantages: list[torch.Tensor] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)


def run_ppo(
    make_estimator: Callable[[ClipPPOLoss], ValueEstimatorBase],
    *,
    seed: int = 0,
    batches: int = 6,
    frames_per_batch: int = 256,
    epochs: int = 3,
    minibatch: int = 64,
) -> PPORun:
    """Train a CartPole actor-critic with ClipPPOLoss from `seed`; the loss's estimator is
    `make_estimator(loss)` (installed with `make_value_estimator`)."""
    torch.manual_seed(seed)
    env = TransformedEnv(GymEnv("CartPole-v1", categorical_action_encoding=True), RewardSum())
    env.set_seed(seed)
    actor = ProbabilisticActor(
        TensorDictModule(
            nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 2)),
            in_keys=["observation"],
            out_keys=["logits"],
        ),
        in_keys=["logits"],
        distribution_class=Categorical,
        return_log_prob=True,
    )
    critic = ValueOperator(
        nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 1)), in_keys=["observation"]
    )
    loss = ClipPPOLoss(actor, critic, entropy_coeff=0.01)
    loss.make_value_estimator(make_estimator(loss))
    optimizer = torch.optim.Adam(loss.parameters(), lr=3e-3)
    collector = Collector(
        env,
        actor,
        frames_per_batch=frames_per_batch,
        total_frames=frames_per_batch * batches,
        auto_register_policy_transforms=False,  # the MLP policy needs none
    )
    run = PPORun()
    try:
        for data in collector:
            with torch.no_grad():
                loss.value_estimator(data)
            run.advantages.append(data["advantage"].clone())
            ended = data["next", "done"]
            finished = data["next", "episode_reward"][ended]
            run.returns.append(float(finished.mean()) if finished.numel() else float("nan"))
            flat = data.reshape(-1)
            for _ in range(epochs):
                for index in torch.randperm(flat.shape[0]).split(minibatch):
                    out = loss(flat[index])
                    total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
                    optimizer.zero_grad()
                    total.backward()
                    optimizer.step()
    finally:
        collector.shutdown()
    return run
