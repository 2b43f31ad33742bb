"""Seeded off-policy demo models, served beside `demo` with `--offpolicy-demos` (`make serve`
turns it on): small enough for a laptop, complete enough for every off-policy loss.

* `demo_sac`: 3-dim observations, a 1-dim tanh-normal actor, a state-action Q ensemble of 2
  and a value network (SAC, TD3, IQL; TorchRL's `num_qvalue_nets=2`), soft targets τ = 0.005.
* `demo_ddpg`: the same shapes with a single state-action Q-network (DDPG).
* `demo_discrete_sac`: 4-dim observations, a categorical actor over 2 actions, an action-value
  Q ensemble of 2 and a value network (discrete SAC, discrete IQL).
* `demo_dqn`: 4-dim observations, one action-value head over 2 actions (DQN, discrete CQL).
"""

from __future__ import annotations

import torch
from torch import nn

from service.models.ensemble import QValueEnsemble
from service.models.manifest import ActionSpec, InputSpec, Manifest, NetworkFile
from service.models.model import Model
from service.models.qvalue import QValueNetworkSpec
from service.models.targets import attach_offpolicy

HIDDEN = 64
BUILT_IN = NetworkFile(file="<built-in>")


class GaussianActor(nn.Module):
    """observation → (loc, scale), scale = softplus(·) + 1e-4 (the manifest's normal-family
    actor contract)."""

    def __init__(self, observation_size: int, action_size: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(observation_size, hidden), nn.ReLU(), nn.Linear(hidden, 2 * action_size)
        )

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = self.body(observation).chunk(2, dim=-1)
        return loc, nn.functional.softplus(scale) + 1e-4


class StateActionMLP(nn.Module):
    """(observation, action) → Q [N, 1]: an MLP over their concatenation."""

    def __init__(self, observation_size: int, action_size: int, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(observation_size + action_size, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, observation: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([observation, action], dim=-1))


def mlp(inputs: int, outputs: int, hidden: int = HIDDEN) -> nn.Sequential:
    """inputs → hidden → hidden → outputs, ReLU."""
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, outputs),
    )  # fmt: skip


def _seeded(seed: int, build):
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return build()
    finally:
        torch.random.set_rng_state(state)


def demo_sac_model(device: torch.device, seed: int = 1) -> Model:
    """SAC-ready continuous demo (see the module docstring)."""
    actor, qvalue, value = _seeded(
        seed,
        lambda: (
            GaussianActor(3, 1),
            QValueEnsemble([StateActionMLP(3, 1) for _ in range(2)]),
            mlp(3, 1),  # V(s), for IQL (and ComputeAdvantage)
        ),
    )
    manifest = Manifest(
        name="demo_sac",
        inputs=(InputSpec(name="observation", shape=(3,)),),
        value_network=BUILT_IN,
        actor_network=BUILT_IN,
        action=ActionSpec(distribution="tanh_normal", shape=(1,)),
        qvalue_network=QValueNetworkSpec(file="<built-in>", kind="state_action", ensemble_size=2),
    )
    return attach_offpolicy(
        Model(
            manifest,
            device,
            value_network=value.to(device),
            actor_network=actor.to(device),
            qvalue_network=qvalue.to(device),
        )
    )


def demo_ddpg_model(device: torch.device, seed: int = 4) -> Model:
    """DDPG-ready continuous demo: `demo_sac`'s shapes, one Q-network."""
    actor, qvalue = _seeded(
        seed, lambda: (GaussianActor(3, 1), QValueEnsemble([StateActionMLP(3, 1)]))
    )
    manifest = Manifest(
        name="demo_ddpg",
        inputs=(InputSpec(name="observation", shape=(3,)),),
        actor_network=BUILT_IN,
        action=ActionSpec(distribution="tanh_normal", shape=(1,)),
        qvalue_network=QValueNetworkSpec(file="<built-in>", kind="state_action", ensemble_size=1),
    )
    return attach_offpolicy(
        Model(manifest, device, actor_network=actor.to(device), qvalue_network=qvalue.to(device))
    )


def demo_discrete_sac_model(device: torch.device, seed: int = 2) -> Model:
    """Discrete-SAC-ready demo (see the module docstring)."""
    actor, qvalue, value = _seeded(
        seed, lambda: (mlp(4, 2), QValueEnsemble([mlp(4, 2) for _ in range(2)]), mlp(4, 1))
    )
    manifest = Manifest(
        name="demo_discrete_sac",
        inputs=(InputSpec(name="observation", shape=(4,)),),
        value_network=BUILT_IN,
        actor_network=BUILT_IN,
        action=ActionSpec(distribution="categorical", num_actions=2),
        qvalue_network=QValueNetworkSpec(
            file="<built-in>", kind="action_value", ensemble_size=2, num_actions=2
        ),
    )
    return attach_offpolicy(
        Model(
            manifest,
            device,
            value_network=value.to(device),
            actor_network=actor.to(device),
            qvalue_network=qvalue.to(device),
        )
    )


def demo_dqn_model(device: torch.device, seed: int = 3) -> Model:
    """DQN-ready demo (see the module docstring)."""
    qvalue = _seeded(seed, lambda: mlp(4, 2))
    manifest = Manifest(
        name="demo_dqn",
        inputs=(InputSpec(name="observation", shape=(4,)),),
        qvalue_network=QValueNetworkSpec(
            file="<built-in>", kind="action_value", ensemble_size=1, num_actions=2
        ),
    )
    return attach_offpolicy(Model(manifest, device, qvalue_network=qvalue.to(device)))


def offpolicy_demo_models(device: torch.device) -> dict[str, Model]:
    """The off-policy demos by name."""
    models = [
        demo_sac_model(device),
        demo_ddpg_model(device),
        demo_discrete_sac_model(device),
        demo_dqn_model(device),
    ]
    return {model.name: model for model in models}
