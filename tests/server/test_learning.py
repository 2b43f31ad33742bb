"""A remote learner learns: an actor loop pulls parameters, collects, and sends updates.

Environment (written here): a contextual bandit. Each step shows a context x ~ N(0, I₄); action 1
pays 1 when x₀ + x₁ > 0, action 0 pays 1 otherwise; every step ends its episode (terminated).
The untrained demo policy earns ≈ 0.5. Pre-stated margin: after 40 PPO updates over the wire its
expected reward on 1,024 held-out contexts must be at least 0.25 above the initial policy's.
"""

from __future__ import annotations

import torch

from service.models.demo import demo_manifest, demo_networks
from service.models.manifest import OptimizerSpec
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.servers import running_server
from tests.support.wire import parameters, stub, tensor

UPDATES = 40
MARGIN = 0.25


def best_action(context: torch.Tensor) -> torch.Tensor:
    return (context[..., 0] + context[..., 1] > 0).long()


def expected_reward(actor: torch.nn.Module, contexts: torch.Tensor) -> float:
    """Exact expected reward of the stochastic policy (no sampling noise)."""
    with torch.no_grad():
        probs = actor(contexts).softmax(-1)
    return float(probs.gather(-1, best_action(contexts).unsqueeze(-1)).mean())


def pull_actor(api, actor: torch.nn.Module) -> int:
    version, tensors = parameters(api, prefixes=["actor_network."])
    actor.load_state_dict({k.removeprefix("actor_network."): v for k, v in tensors.items()})
    return version


def test_policy_improves_through_remote_updates() -> None:
    value, actor = demo_networks()
    manifest = demo_manifest()
    manifest = type(manifest)(
        **{**manifest.__dict__, "optimizer": OptimizerSpec("adam", lr=3e-3, max_grad_norm=1.0)}
    )
    model = Model(manifest, torch.device("cpu"), value_network=value, actor_network=actor)
    held_out = torch.randn(1024, 4, generator=torch.Generator().manual_seed(123))
    local_actor = demo_networks()[1]
    g = torch.Generator().manual_seed(7)
    with running_server(models={"demo": model}) as server:
        api = stub(server.target)
        pull_actor(api, local_actor)
        initial = expected_reward(local_actor, held_out)
        for update in range(UPDATES):
            version = pull_actor(api, local_actor)
            assert version == update
            contexts = torch.randn(16, 8, 4, generator=g)
            with torch.no_grad():
                dist = torch.distributions.Categorical(logits=local_actor(contexts))
                actions = torch.multinomial(dist.probs.reshape(-1, 2), 1, generator=g).view(16, 8)
                log_prob = dist.log_prob(actions)
            reward = (actions == best_action(contexts)).float()
            ends = torch.ones(16, 8, dtype=torch.bool)
            trajectory = pb.Trajectory(
                reward=tensor(reward),
                done=tensor(ends),
                terminated=tensor(ends),
                action=tensor(actions),
                sample_log_prob=tensor(log_prob),
                form=pb.TRAJECTORY_FORM_COMPACT,  # next observations are never needed here
            )
            trajectory.observation["observation"].CopyFrom(
                tensor(torch.cat([contexts, torch.zeros(16, 1, 4)], dim=1))
            )
            trajectory.next_observation["observation"].CopyFrom(tensor(torch.zeros(0, 4)))
            response = api.ComputeLoss(
                pb.ComputeLossRequest(
                    trajectory=trajectory,
                    ppo_clip=pb.ClipPPOLoss(),
                    apply_update=True,
                    expected_parameter_version=version,
                )
            )
            assert response.new_parameter_version == version + 1
        pull_actor(api, local_actor)
        final = expected_reward(local_actor, held_out)
    assert initial < 0.6
    assert final >= initial + MARGIN, (initial, final)
