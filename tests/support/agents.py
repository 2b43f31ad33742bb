"""A multi-agent (IPPO-style, parameter-shared) float64 model and its TorchRL counterpart in the
MARL layout: per-agent entries under "agents", [B, T, n_agents, ...], time before agents."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict
from tensordict.nn import TensorDictModule
from torch import nn
from torch.distributions import Categorical
from torchrl.modules import ProbabilisticActor, ValueOperator

from service.models.manifest import (
    ActionSpec,
    InputSpec,
    Manifest,
    NetworkFile,
    OptimizerSpec,
)
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.wire import tensor

F64 = torch.float64
OBS, ACTIONS, AGENTS = 4, 3, 3
LR = 0.25


def networks(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Seeded float64 (value, actor), shared by every agent."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        value = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, 1)).to(F64)
        actor = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, ACTIONS)).to(F64)
    finally:
        torch.random.set_rng_state(state)
    return value, actor


def model(seed: int = 0, agents: int = AGENTS) -> Model:
    value, actor = networks(seed)
    manifest = Manifest(
        name="team",
        inputs=(InputSpec(name="observation", shape=(OBS,), dtype="float64"),),
        value_network=NetworkFile(file="<test>"),
        actor_network=NetworkFile(file="<test>"),
        action=ActionSpec(distribution="categorical", num_actions=ACTIONS),
        agents=agents,
        optimizer=OptimizerSpec("sgd", lr=LR),
    )
    return Model(manifest, torch.device("cpu"), value_network=value, actor_network=actor)


def torchrl_modules(value: nn.Module, actor: nn.Module):
    """TorchRL's MAPPO/IPPO example set-up with parameter sharing: per-agent keys."""
    critic = ValueOperator(
        value, in_keys=[("agents", "observation")], out_keys=[("agents", "state_value")]
    )
    policy = ProbabilisticActor(
        TensorDictModule(
            actor, in_keys=[("agents", "observation")], out_keys=[("agents", "logits")]
        ),
        in_keys=[("agents", "logits")],
        out_keys=[("agents", "action")],
        distribution_class=Categorical,
        return_log_prob=True,
        log_prob_key=("agents", "sample_log_prob"),
    )
    return critic, policy


@dataclass
class Data:
    """[B, T, n] per-agent data; done/terminated shared [B, T] or per agent [B, T, n]."""

    observation: torch.Tensor  # [B, T, n, 4]
    next_observation: torch.Tensor
    reward: torch.Tensor  # [B, T, n]
    done: torch.Tensor
    terminated: torch.Tensor
    action: torch.Tensor  # [B, T, n]
    sample_log_prob: torch.Tensor  # [B, T, n]

    def per_agent(self, flag: torch.Tensor) -> torch.Tensor:
        """A flag as [B, T, n] (a shared one expanded to each agent)."""
        return (
            flag if flag.shape == self.reward.shape else flag.unsqueeze(-1).expand_as(self.reward)
        )


def make_data(batch: int, steps: int, seed: int, shared_done: bool) -> Data:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, steps, AGENTS)
    flags = (batch, steps) if shared_done else shape
    chain = torch.randn(batch, steps + 1, AGENTS, OBS, generator=g, dtype=F64)
    done = torch.rand(flags, generator=g) < 0.2
    terminated = done & (torch.rand(flags, generator=g) < 0.5)
    next_observation = chain[:, 1:].clone()
    ended = done if shared_done else done.any(-1)
    next_observation[ended] = torch.randn(int(ended.sum()), AGENTS, OBS, generator=g, dtype=F64)
    return Data(
        observation=chain[:, :-1].contiguous(),
        next_observation=next_observation,
        reward=torch.randn(shape, generator=g, dtype=F64),
        done=done,
        terminated=terminated,
        action=torch.randint(0, ACTIONS, shape, generator=g),
        sample_log_prob=-torch.rand(shape, generator=g, dtype=F64) * 1.5 - 0.2,
    )


def trajectory(data: Data, n_agents: int = AGENTS) -> pb.Trajectory:
    message = pb.Trajectory(
        reward=tensor(data.reward),
        done=tensor(data.done),
        terminated=tensor(data.terminated),
        action=tensor(data.action),
        sample_log_prob=tensor(data.sample_log_prob),
        form=pb.TRAJECTORY_FORM_FULL,
        n_agents=n_agents,
    )
    message.observation["observation"].CopyFrom(tensor(data.observation))
    message.next_observation["observation"].CopyFrom(tensor(data.next_observation))
    return message


def tensordict(data: Data) -> TensorDict:
    """TorchRL's MARL tensordict: batch [B, T], per-agent entries [B, T, n, ...] under "agents"."""
    batch, steps = data.reward.shape[:2]
    agents = {
        "observation": data.observation,
        "action": data.action,
        "sample_log_prob": data.sample_log_prob,
    }
    following = {
        "observation": data.next_observation,
        "reward": data.reward.unsqueeze(-1),
        "done": data.per_agent(data.done).unsqueeze(-1),
        "terminated": data.per_agent(data.terminated).unsqueeze(-1),
    }
    return TensorDict(
        {
            "agents": TensorDict(agents, batch_size=(batch, steps, AGENTS)),
            "next": {"agents": TensorDict(following, batch_size=(batch, steps, AGENTS))},
        },
        batch_size=(batch, steps),
    )


# ---- MAPPO: a centralised critic on the global state, decentralised actors ------------------


class StateCritic(nn.Module):
    """The server's critic: (observation, state) → V(state), the same for every agent."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, observation: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.mlp(state)


class LocalActor(nn.Module):
    """The server's actor: (observation, state) → logits from the agent's own observation."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, observation: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return self.mlp(observation)


class CentralCritic(nn.Module):
    """TorchRL's view (MultiAgentMLP(centralised=True, share_params=True)): the agents'
    observations [..., n, 4] → one value of their concatenation, for each agent [..., n, 1]."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        value = self.mlp(observation.flatten(-2))
        return value.unsqueeze(-2).expand(*observation.shape[:-1], 1)


def mappo_networks(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Seeded float64 (critic MLP over the global state [n·4], actor MLP over [4])."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        critic = nn.Sequential(nn.Linear(AGENTS * OBS, 16), nn.Tanh(), nn.Linear(16, 1)).to(F64)
        actor = nn.Sequential(nn.Linear(OBS, 16), nn.Tanh(), nn.Linear(16, ACTIONS)).to(F64)
    finally:
        torch.random.set_rng_state(state)
    return critic, actor


def mappo_model(critic: nn.Module, actor: nn.Module) -> Model:
    manifest = Manifest(
        name="team",
        inputs=(
            InputSpec(name="observation", shape=(OBS,), dtype="float64"),
            InputSpec(name="state", shape=(AGENTS * OBS,), dtype="float64"),
        ),
        value_network=NetworkFile(file="<test>"),
        actor_network=NetworkFile(file="<test>"),
        action=ActionSpec(distribution="categorical", num_actions=ACTIONS),
        agents=AGENTS,
        optimizer=OptimizerSpec("sgd", lr=LR),
    )
    return Model(
        manifest,
        torch.device("cpu"),
        value_network=StateCritic(critic),
        actor_network=LocalActor(actor),
    )


def global_state(observation: torch.Tensor) -> torch.Tensor:
    """[B, T, n, 4] → every agent's copy of the global state [B, T, n, n·4]."""
    return observation.flatten(-2).unsqueeze(-2).expand(*observation.shape[:-1], AGENTS * OBS)


def mappo_trajectory(data: Data) -> pb.Trajectory:
    message = trajectory(data)
    message.observation["state"].CopyFrom(tensor(global_state(data.observation).contiguous()))
    message.next_observation["state"].CopyFrom(
        tensor(global_state(data.next_observation).contiguous())
    )
    return message
