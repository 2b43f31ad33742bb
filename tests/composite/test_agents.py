"""The multi-agent layout [*B, T, n_agents] over the wire against TorchRL's MARL set-up
(IPPO/MAPPO examples: per-agent keys under "agents", parameter-shared networks, done shared or
per agent): advantages per agent (TorchRL's GAE with time before agents), ClipPPOLoss terms and
gradients (float64, 1e-5 relative); bad agent layouts refused."""

from __future__ import annotations

import grpc
import pytest
import torch
from torchrl.modules import ValueOperator
from torchrl.objectives import ClipPPOLoss
from torchrl.objectives.value.functional import generalized_advantage_estimate

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import agents as A
from tests.support.composite import snapshot
from tests.support.servers import running_server
from tests.support.wire import array, rpc_error, stub


def _gae(td, critic):
    """TorchRL's GAE on the MARL layout: [B, T, n, 1] with time at dim -3, γ, λ float64."""
    with torch.no_grad():
        value = critic(td.select(("agents", "observation")).clone())["agents", "state_value"]
        following = td["next"].select(("agents", "observation")).clone()
        next_value = critic(following)["agents", "state_value"]
    nxt = td["next", "agents"]
    return generalized_advantage_estimate(
        torch.tensor(0.99, dtype=A.F64), torch.tensor(0.95, dtype=A.F64), value, next_value,
        nxt["reward"], nxt["done"], nxt["terminated"], time_dim=-3,
    )  # fmt: skip


@pytest.mark.parametrize("shared_done", [True, False], ids=["shared_done", "per_agent_done"])
def test_ippo_matches_torchrl_marl(shared_done: bool) -> None:
    data = A.make_data(2, steps=7, seed=3, shared_done=shared_done)
    server_model = A.model(seed=4)
    value, actor = A.networks(seed=4)
    with running_server(models={"team": server_model}) as server:
        api = stub(server.target)
        advantage = api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(model_name="team", trajectory=A.trajectory(data)),
            timeout=60,
        )
        before = snapshot(server_model)
        response = api.ComputeLoss(
            pb.ComputeLossRequest(
                model_name="team",
                trajectory=A.trajectory(data),
                ppo_clip=pb.ClipPPOLoss(),
                apply_update=True,
            ),
            timeout=60,
        )
        after = snapshot(server_model)
    critic, policy = A.torchrl_modules(value, actor)
    td = A.tensordict(data)
    expected_advantage, expected_target = _gae(td, critic)
    torch.testing.assert_close(array(advantage.advantage), expected_advantage.squeeze(-1))
    torch.testing.assert_close(array(advantage.value_target), expected_target.squeeze(-1))
    assert list(advantage.advantage.shape) == [2, 7, A.AGENTS]

    td["agents", "advantage"], td["agents", "value_target"] = expected_advantage, expected_target
    loss = ClipPPOLoss(policy, critic)
    loss.set_keys(
        action=("agents", "action"), sample_log_prob=("agents", "sample_log_prob"),
        value=("agents", "state_value"), advantage=("agents", "advantage"),
        value_target=("agents", "value_target"), reward=("agents", "reward"),
        done=("agents", "done"), terminated=("agents", "terminated"),
    )  # fmt: skip
    out = loss(td)
    total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
    for key in ("loss_objective", "loss_critic", "loss_entropy", "entropy", "kl_approx",
                "clip_fraction"):  # fmt: skip
        assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-9), key
    grads = torch.autograd.grad(total, [*value.parameters(), *actor.parameters()])
    for old, new, grad in zip(before, after, grads, strict=True):
        torch.testing.assert_close((old - new) / A.LR, grad, rtol=1e-5, atol=1e-9)


def test_agent_count_differing_from_the_model_is_refused() -> None:
    data = A.make_data(2, steps=5, seed=1, shared_done=True)
    server_model = A.model(seed=0)
    with running_server(models={"team": server_model}) as server:
        api = stub(server.target)
        # The request's n_agents names 2 agents, its tensors have 3.
        wrong_layout = A.trajectory(data, n_agents=2)
        request = pb.ComputeAdvantageRequest(model_name="team", trajectory=wrong_layout)
        error = rpc_error(api.ComputeAdvantage, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "trajectory.reward: expected shape [*B, T, n_agents] with n_agents = 2" in (
            error.details()
        )
        # Consistent tensors of 2 agents, but the model serves 3.
        two = A.Data(**{k: v[:, :, :2] if v.dim() > 2 else v for k, v in data.__dict__.items()})
        for call, request in (
            (api.ComputeAdvantage,
             pb.ComputeAdvantageRequest(model_name="team", trajectory=A.trajectory(two, 2))),
            (api.ComputeLoss,
             pb.ComputeLossRequest(model_name="team", trajectory=A.trajectory(two, 2),
                                   apply_update=True)),
        ):  # fmt: skip
            error = rpc_error(call, request)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "trajectory.n_agents: model 'team' serves 3 agents, got 2" in error.details()
        # Per-agent done flags for the wrong number of agents.
        bad_done = A.trajectory(data)
        bad_done.done.CopyFrom(pb.Tensor(dtype=pb.DTYPE_BOOL, shape=[2, 5, 2], raw_data=bytes(20)))
        request = pb.ComputeAdvantageRequest(model_name="team", trajectory=bad_done)
        error = rpc_error(api.ComputeAdvantage, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "trajectory.done: expected shape [2, 5] (shared by the agents) or [2, 5, 3]" in (
            error.details()
        )
        assert server_model.parameter_version == 0


def test_mappo_centralised_critic_matches_torchrl() -> None:
    """MAPPO: the critic sees the global state (here: every agent's observation, as TorchRL's
    MultiAgentMLP(centralised=True, share_params=True)), the actors their own observation. Over
    the wire the global state is a second input each agent's row carries."""
    data = A.make_data(2, steps=6, seed=8, shared_done=True)
    critic_mlp, actor_mlp = A.mappo_networks(seed=3)
    server_model = A.mappo_model(*A.mappo_networks(seed=3))
    with running_server(models={"team": server_model}) as server:
        before = snapshot(server_model)
        response = stub(server.target).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="team", trajectory=A.mappo_trajectory(data), apply_update=True
            ),
            timeout=60,
        )
        after = snapshot(server_model)
    critic = ValueOperator(
        A.CentralCritic(critic_mlp),
        in_keys=[("agents", "observation")],
        out_keys=[("agents", "state_value")],
    )
    _, policy = A.torchrl_modules(critic_mlp, actor_mlp)
    td = A.tensordict(data)
    td["agents", "advantage"], td["agents", "value_target"] = _gae(td, critic)
    loss = ClipPPOLoss(policy, critic)
    loss.set_keys(
        action=("agents", "action"), sample_log_prob=("agents", "sample_log_prob"),
        value=("agents", "state_value"), advantage=("agents", "advantage"),
        value_target=("agents", "value_target"), reward=("agents", "reward"),
        done=("agents", "done"), terminated=("agents", "terminated"),
    )  # fmt: skip
    out = loss(td)
    total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
    for key in ("loss_objective", "loss_critic", "loss_entropy", "kl_approx"):
        assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-9), key
    grads = torch.autograd.grad(total, [*critic_mlp.parameters(), *actor_mlp.parameters()])
    for old, new, grad in zip(before, after, grads, strict=True):
        torch.testing.assert_close((old - new) / A.LR, grad, rtol=1e-5, atol=1e-9)
