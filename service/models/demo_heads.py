"""A seeded demo model with two action heads (``export-model --two-heads``).

CartPole-sized observations (4), a categorical ``move`` head over 3 choices and a tanh-normal
``aim`` head in (−1, 1)²: the smallest composite actor, to try the composite contract with.
The actor returns ``{"move.logits", "aim.loc", "aim.scale"}`` (a flat mapping of tensors, the
form TorchScript can trace as well as torch.export).
"""

from __future__ import annotations

import torch
from torch import nn

from service.models.manifest import ActionHeadSpec, ActionSpec, InputSpec, Manifest, NetworkFile
from service.models.model import Model

TWO_HEADS_NAME = "demo_heads"
OBSERVATION_SIZE, MOVES, AIM = 4, 3, 2
SEED = 0


class TwoHeadActor(nn.Module):
    """obs [N, 4] → {"move.logits": [N, 3], "aim.loc": [N, 2], "aim.scale": [N, 2]}."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(OBSERVATION_SIZE, 64), nn.Tanh())
        self.move = nn.Linear(64, MOVES)
        self.loc = nn.Linear(64, AIM)
        self.scale = nn.Linear(64, AIM)

    def forward(self, observation: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = self.body(observation)
        scale = nn.functional.softplus(self.scale(hidden)) + 1e-3
        return {"move.logits": self.move(hidden), "aim.loc": self.loc(hidden), "aim.scale": scale}


def two_head_networks(seed: int = SEED) -> tuple[nn.Module, nn.Module]:
    """Seeded (value, actor)."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        value = nn.Sequential(
            nn.Linear(OBSERVATION_SIZE, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
            nn.Linear(64, 1),
        )  # fmt: skip
        actor = TwoHeadActor()
    finally:
        torch.random.set_rng_state(state)
    return value, actor


def two_head_manifest() -> Manifest:
    """Its manifest (networks in memory until exported)."""
    return Manifest(
        name=TWO_HEADS_NAME,
        inputs=(InputSpec(name="observation", shape=(OBSERVATION_SIZE,)),),
        value_network=NetworkFile(file="<built-in>"),
        actor_network=NetworkFile(file="<built-in>"),
        action=ActionSpec(
            distribution="composite",
            heads=(
                ActionHeadSpec(name="move", distribution="categorical", num_actions=MOVES),
                ActionHeadSpec(name="aim", distribution="tanh_normal", shape=(AIM,)),
            ),
        ),
    )


def two_head_model(device: torch.device) -> Model:
    """The two-head demo model on `device`."""
    value, actor = two_head_networks()
    return Model(
        manifest=two_head_manifest(),
        device=device,
        value_network=value.to(device).eval(),
        actor_network=actor.to(device).eval(),
    )
