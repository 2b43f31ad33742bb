"""A tiny task for a DreamerV3 learner over the wire: a point on [−1, 1] pushed by a tanh
action (x' = clip(x + 0.3 a, −1, 1)), rewarded by where it lands (r = x'). Observations
[x, x², 0.5]. A random policy earns about 0 per episode; pushing right earns up to ≈ T − 3.

The client acts with local copies of the server's networks (pulled with GetParameters): the
world model's posterior filters the observations into latents, the actor acts on them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.models.dreamer_demo import DreamerSizes, dreamer_manifest, dreamer_networks
from service.models.export import export_model
from service.models.manifest import OptimizerSpec
from service.models.world_model_export import WorldModelModules

STEP = 0.3


def export_learner(folder: Path, lr: float = 1e-3) -> str:
    """The demo Dreamer networks as a model folder with faster learning rates; its name."""
    sizes = DreamerSizes()
    world, critic, actor = dreamer_networks(sizes)
    manifest = dreamer_manifest(sizes)
    optimizers = {
        "actor": OptimizerSpec(lr=lr, max_grad_norm=100.0),
        "critic": OptimizerSpec(lr=lr, max_grad_norm=100.0),
        "world_model": OptimizerSpec(lr=3 * lr, max_grad_norm=1000.0),
    }
    export_model(
        folder / "point",
        "point",
        manifest.inputs,
        value_network=critic,
        actor_network=actor,
        action=manifest.action,
        world_model=WorldModelModules(
            prior=world["prior"],
            posterior=world["posterior"],
            encoder=world["encoder"],
            decoder=world["decoder"],
            reward=world["reward"],
            continue_head=world["continue"],
            observations=manifest.world_model.observations,
            num_categoricals=sizes.num_categoricals,
            num_classes=sizes.num_classes,
            belief_size=sizes.belief,
            action_size=sizes.action,
            optimizers=optimizers,
        ),
    )
    return "point"


@dataclasses.dataclass
class LocalAgent:
    """Local copies of the learner's networks, refreshed from its parameters."""

    world: dict[str, nn.Module]
    actor: nn.Module

    @classmethod
    def fresh(cls) -> LocalAgent:
        world, _, actor = dreamer_networks(DreamerSizes())
        return cls(world=world, actor=actor)

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Install GetParameters' tensors ("world_model.<net>.…", "actor_network.…")."""
        for name, network in (*self.world.items(), ("actor", self.actor)):
            prefix = "actor_network." if name == "actor" else f"world_model.{name}."
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            network.load_state_dict(state)


def _observation(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([x, x * x, torch.full_like(x, 0.5)], -1)


@torch.no_grad()
def episodes(
    agent: LocalAgent, batch: int, steps: int, generator: torch.Generator
) -> dict[str, np.ndarray]:
    """`batch` episodes of `steps` steps in the replay layout (action before observation)."""
    x = torch.rand(batch, generator=generator) * 2 - 1
    state, belief = torch.zeros(batch, 16), torch.zeros(batch, 16)
    action, reward = torch.zeros(batch, 1), torch.zeros(batch)
    observations, actions, rewards = [], [], []
    for _ in range(steps):
        observation = _observation(x)
        observations.append(observation)
        actions.append(action)
        rewards.append(reward)
        _, _, belief = agent.world["prior"](state, belief, action)
        _, state = agent.world["posterior"](belief, agent.world["encoder"](observation))
        loc, scale = agent.actor(state, belief)
        action = torch.tanh(loc + scale * torch.randn(loc.shape, generator=generator))
        x = (x + STEP * action[:, 0]).clamp(-1, 1)
        reward = x.clone()
    is_first = np.zeros((batch, steps), dtype=bool)
    is_first[:, 0] = True
    return {
        "observation": torch.stack(observations, 1).numpy(),
        "action": torch.stack(actions, 1).numpy(),
        "reward": torch.stack(rewards, 1).numpy(),
        "is_first": is_first,
    }


def real_return(agent: LocalAgent, seed: int = 123, batch: int = 64, steps: int = 16) -> float:
    """The mean episode return of the agent's policy on fixed start states and noise."""
    replay = episodes(agent, batch, steps, torch.Generator().manual_seed(seed))
    return float(replay["reward"][:, 1:].sum(1).mean())
