"""Per-agent (non-shared) networks against TorchRL's `MultiAgentMLP(share_params=False)`: the
TorchRL modules, the service's copies of their weights (`PerAgentNetworks`), the server model,
and the compact form of the MARL data of `tests.support.agents`."""

from __future__ import annotations

import torch
from torch import nn
from torchrl.modules import MultiAgentMLP

from service.models.agent_networks import PerAgentNetworks
from service.models.manifest import ActionSpec, InputSpec, Manifest, NetworkFile, OptimizerSpec
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import agents as A
from tests.support.wire import tensor


def torchrl_mlps(seed: int, centralised_critic: bool = False) -> tuple[nn.Module, nn.Module]:
    """Seeded float64 TorchRL (critic, actor) MLPs with one parameter set per agent."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        common = dict(n_agent_inputs=A.OBS, n_agents=A.AGENTS, share_params=False, depth=1,
                      num_cells=16, activation_class=nn.Tanh)  # fmt: skip
        critic = MultiAgentMLP(n_agent_outputs=1, centralised=centralised_critic, **common)
        actor = MultiAgentMLP(n_agent_outputs=A.ACTIONS, centralised=False, **common)
    finally:
        torch.random.set_rng_state(state)
    return critic.to(A.F64), actor.to(A.F64)


def copied(mlp: nn.Module) -> PerAgentNetworks:
    """The service's one-network-per-agent copy of a decentralised MultiAgentMLP's weights."""
    stacked = {name.removeprefix("params."): p.detach() for name, p in mlp.named_parameters()}
    networks = []
    for agent in range(A.AGENTS):
        inner, outer = stacked["0.weight"][agent], stacked["2.weight"][agent]
        network = nn.Sequential(
            nn.Linear(inner.shape[1], inner.shape[0]),
            nn.Tanh(),
            nn.Linear(outer.shape[1], outer.shape[0]),
        ).to(A.F64)
        network.load_state_dict({key: value[agent].clone() for key, value in stacked.items()})
        networks.append(network)
    return PerAgentNetworks(networks)


def per_agent_grads(grads: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """TorchRL's stacked gradients {"params.0.weight": [n, ...]} in `copied`'s parameter order
    (agent 0's four tensors, then agent 1's, ...)."""
    order = ("params.0.weight", "params.0.bias", "params.2.weight", "params.2.bias")
    return [grads[name][agent] for agent in range(A.AGENTS) for name in order]


def model(value: nn.Module, actor: nn.Module) -> Model:
    """The in-process server model with per-agent networks (SGD at A.LR)."""
    manifest = Manifest(
        name="team",
        inputs=(InputSpec(name="observation", shape=(A.OBS,), dtype="float64"),),
        value_network=NetworkFile(file="<test>"),
        actor_network=NetworkFile(file="<test>"),
        action=ActionSpec(distribution="categorical", num_actions=A.ACTIONS),
        agents=A.AGENTS,
        agent_networks="per_agent",
        optimizer=OptimizerSpec("sgd", lr=A.LR),
    )
    return Model(manifest, torch.device("cpu"), value_network=value, actor_network=actor)


def compact_trajectory(data: A.Data) -> pb.Trajectory:
    """The compact form of `data` (done shared): observations [B, T + 1, n, 4], then the true
    next observations [K, n, 4] of the K truncated steps."""
    assert data.done.shape == data.reward.shape[:2]
    message = A.trajectory(data)
    message.form = pb.TRAJECTORY_FORM_COMPACT
    chain = torch.cat([data.observation, data.next_observation[:, -1:]], dim=1)
    truncated = data.done & ~data.terminated
    message.observation["observation"].CopyFrom(tensor(chain.contiguous()))
    message.next_observation["observation"].CopyFrom(
        tensor(data.next_observation[truncated].contiguous())
    )
    return message
