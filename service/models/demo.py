"""The built-in demo model: served when the server starts without a model repository."""

from __future__ import annotations

import torch
from torch import nn

from service.models.manifest import ActionSpec, InputSpec, Manifest, NetworkFile
from service.models.model import Model

DEMO_NAME = "demo"
DEMO_OBSERVATION_SIZE = 4
DEMO_ACTIONS = 2
DEMO_SEED = 0


def demo_networks(seed: int = DEMO_SEED) -> tuple[nn.Module, nn.Module]:
    """Seeded (value, actor) MLPs for 4-dim observations and 2 actions (CartPole-sized)."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        value = nn.Sequential(
            nn.Linear(DEMO_OBSERVATION_SIZE, 64), nn.Tanh(),
            nn.Linear(64, 64), nn.Tanh(),
            nn.Linear(64, 1),
        )  # fmt: skip
        actor = nn.Sequential(
            nn.Linear(DEMO_OBSERVATION_SIZE, 64), nn.Tanh(), nn.Linear(64, DEMO_ACTIONS)
        )
    finally:
        torch.random.set_rng_state(generator_state)
    return value, actor


def demo_manifest() -> Manifest:
    """Manifest of the demo model (its networks live in memory, not in files)."""
    return Manifest(
        name=DEMO_NAME,
        inputs=(InputSpec(name="observation", shape=(DEMO_OBSERVATION_SIZE,)),),
        value_network=NetworkFile(file="<built-in>"),
        actor_network=NetworkFile(file="<built-in>"),
        action=ActionSpec(distribution="categorical", num_actions=DEMO_ACTIONS),
    )


def demo_model(device: torch.device) -> Model:
    """The demo model on `device`."""
    value, actor = demo_networks()
    return Model(
        manifest=demo_manifest(),
        device=device,
        value_network=value.to(device).eval(),
        actor_network=actor.to(device).eval(),
    )
