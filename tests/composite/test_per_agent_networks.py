"""Per-agent (non-shared) networks, manifest `agent_networks: "per_agent"`, against TorchRL's
MARL set-up with `MultiAgentMLP(share_params=False)` (IPPO with per-agent critic and policy;
MAPPO with a centralised critic): GAE advantages per agent, ClipPPOLoss terms, and each agent's
own gradient through apply_update (float64, 1e-5 relative); the full and the compact form; the
export; bad manifests and networks that drop the agent dimension."""

from __future__ import annotations

import json
from dataclasses import replace

import grpc
import pytest
import torch
from advantage_client import AdvantageClient
from torch import nn
from torchrl.objectives import A2CLoss, ClipPPOLoss
from torchrl.objectives.value.functional import generalized_advantage_estimate

from service.models.agent_networks import PerAgentNetworks
from service.models.export import export_model
from service.models.loading import load_model
from service.models.manifest import (
    ActionHeadSpec,
    ActionSpec,
    InputSpec,
    ManifestError,
    parse_manifest,
)
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import agents as A
from tests.support import per_agent as P
from tests.support.composite import snapshot
from tests.support.servers import running_server
from tests.support.wire import array, rpc_error, stub, tensor

MARL_KEYS = dict(
    action=("agents", "action"), sample_log_prob=("agents", "sample_log_prob"),
    value=("agents", "state_value"), advantage=("agents", "advantage"),
    value_target=("agents", "value_target"), reward=("agents", "reward"),
    done=("agents", "done"), terminated=("agents", "terminated"),
)  # fmt: skip
METRICS = ("loss_objective", "loss_critic", "loss_entropy", "entropy", "kl_approx",
           "clip_fraction")  # fmt: skip


def _gae(td, critic):
    """TorchRL's GAE on the MARL layout: [B, T, n, 1], time at dim -3, γ = 0.99, λ = 0.95."""
    with torch.no_grad():
        value = critic(td.select(("agents", "observation")).clone())["agents", "state_value"]
        following = td["next"].select(("agents", "observation")).clone()
        next_value = critic(following)["agents", "state_value"]
    nxt = td["next", "agents"]
    return generalized_advantage_estimate(
        torch.tensor(0.99, dtype=A.F64), torch.tensor(0.95, dtype=A.F64), value, next_value,
        nxt["reward"], nxt["done"], nxt["terminated"], time_dim=-3,
    )  # fmt: skip


def _torchrl_loss(critic_mlp, actor_mlp, data, loss_class=ClipPPOLoss, mask=None):
    """TorchRL's loss outputs and gradients (by parameter name) on the MARL data; with a `mask`
    on the unpadded data: GAE on each valid segment alone, the loss over their steps."""
    critic, policy = A.torchrl_modules(critic_mlp, actor_mlp)
    td = A.tensordict(data)
    advantage, target = _gae(td, critic)
    td["agents", "advantage"], td["agents", "value_target"] = advantage, target
    if mask is not None:
        parts = []
        for b, length in enumerate(mask.sum(-1).tolist()):
            segment = td[b : b + 1, :length].clone()
            advantage, target = _gae(segment, critic)
            segment["agents", "advantage"], segment["agents", "value_target"] = advantage, target
            parts.append(segment.reshape(-1))
        td = torch.cat(parts, 0)
        assert td.shape[0] == int(mask.sum())
    loss = loss_class(policy, critic)
    loss.set_keys(**MARL_KEYS)
    out = loss(td)
    total = out["loss_objective"] + out["loss_critic"] + out["loss_entropy"]
    named = [*critic_mlp.named_parameters(), *actor_mlp.named_parameters()]
    grads = torch.autograd.grad(total, [p for _, p in named])
    count = len(list(critic_mlp.parameters()))
    critic_grads = dict(zip([n for n, _ in named[:count]], grads[:count], strict=True))
    actor_grads = dict(zip([n for n, _ in named[count:]], grads[count:], strict=True))
    return (advantage, target), out, critic_grads, actor_grads


@pytest.mark.parametrize("form", ["full", "compact"])
def test_ippo_per_agent_networks_match_torchrl(form: str) -> None:
    data = A.make_data(2, steps=7, seed=5, shared_done=True)
    critic_mlp, actor_mlp = P.torchrl_mlps(seed=6)
    server_model = P.model(P.copied(critic_mlp), P.copied(actor_mlp))
    message = A.trajectory(data) if form == "full" else P.compact_trajectory(data)
    with running_server(models={"team": server_model}) as server:
        api = stub(server.target)
        advantage = api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(model_name="team", trajectory=message), timeout=60
        )
        before = snapshot(server_model)
        response = api.ComputeLoss(
            pb.ComputeLossRequest(
                model_name="team", trajectory=message, ppo_clip=pb.ClipPPOLoss(),
                apply_update=True,
            ),
            timeout=60,
        )  # fmt: skip
        after = snapshot(server_model)
    (expected_advantage, expected_target), out, critic_grads, actor_grads = _torchrl_loss(
        critic_mlp, actor_mlp, data
    )
    torch.testing.assert_close(array(advantage.advantage), expected_advantage.squeeze(-1))
    torch.testing.assert_close(array(advantage.value_target), expected_target.squeeze(-1))
    assert list(advantage.advantage.shape) == [2, 7, A.AGENTS]
    for key in METRICS:
        assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-9), key
    # Each agent's parameters moved by their own gradient (agent 0's, then 1's, ...).
    grads = [*P.per_agent_grads(critic_grads), *P.per_agent_grads(actor_grads)]
    assert len(grads) == len(before)
    for old, new, grad in zip(before, after, grads, strict=True):
        torch.testing.assert_close((old - new) / A.LR, grad, rtol=1e-5, atol=1e-9)
    moved = [bool((old != new).any()) for old, new in zip(before, after, strict=True)]
    assert all(moved)


def test_ippo_per_agent_networks_with_per_agent_done() -> None:
    data = A.make_data(3, steps=6, seed=11, shared_done=False)
    critic_mlp, actor_mlp = P.torchrl_mlps(seed=12)
    server_model = P.model(P.copied(critic_mlp), P.copied(actor_mlp))
    with running_server(models={"team": server_model}) as server:
        response = stub(server.target).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="team", trajectory=A.trajectory(data), ppo_clip=pb.ClipPPOLoss()
            ),
            timeout=60,
        )
    _, out, _, _ = _torchrl_loss(critic_mlp, actor_mlp, data)
    for key in METRICS:
        assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-9), key


def test_mappo_exported_torchrl_modules_match_torchrl(tmp_path) -> None:
    """MAPPO: TorchRL's MultiAgentMLP(centralised=True, share_params=False) critic and a
    per-agent actor, exported as they are (torch.export) and loaded from a model folder."""
    data = A.make_data(2, steps=6, seed=21, shared_done=True)
    critic_mlp, actor_mlp = P.torchrl_mlps(seed=22, centralised_critic=True)
    manifest = export_model(
        tmp_path / "team", "team", [InputSpec("observation", (A.OBS,), "float64")],
        value_network=critic_mlp, actor_network=actor_mlp,
        action=ActionSpec("categorical", num_actions=A.ACTIONS),
        agents=A.AGENTS, agent_networks="per_agent",
    )  # fmt: skip
    assert manifest.agent_networks == "per_agent"
    written = json.loads((tmp_path / "team" / "model.json").read_text())
    written["optimizer"] = {"name": "sgd", "lr": A.LR}
    (tmp_path / "team" / "model.json").write_text(json.dumps(written))
    server_model = load_model(tmp_path / "team", torch.device("cpu"))
    with running_server(models={"team": server_model}) as server:
        api = stub(server.target)
        info = api.GetModel(pb.GetModelRequest(model_name="team"), timeout=30)
        advantage = api.ComputeAdvantage(
            pb.ComputeAdvantageRequest(model_name="team", trajectory=A.trajectory(data)),
            timeout=60,
        )
        before = snapshot(server_model)
        response = api.ComputeLoss(
            pb.ComputeLossRequest(
                model_name="team", trajectory=A.trajectory(data), ppo_clip=pb.ClipPPOLoss(),
                apply_update=True,
            ),
            timeout=60,
        )  # fmt: skip
        after = snapshot(server_model)
    assert info.model.n_agents == A.AGENTS and info.model.agent_networks == "per_agent"
    (expected_advantage, _), out, critic_grads, actor_grads = _torchrl_loss(
        critic_mlp, actor_mlp, data
    )
    torch.testing.assert_close(array(advantage.advantage), expected_advantage.squeeze(-1))
    for key in METRICS:
        assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-9), key
    grads = [*critic_grads.values(), *actor_grads.values()]  # the exported module's order
    assert [tuple(g.shape) for g in grads] == [tuple(p.shape) for p in before]
    for old, new, grad in zip(before, after, grads, strict=True):
        torch.testing.assert_close((old - new) / A.LR, grad, rtol=1e-5, atol=1e-9)


def _manifest(**extra) -> dict:
    return {
        "name": "team",
        "inputs": [{"name": "observation", "shape": [A.OBS], "dtype": "float64"}],
        "value_network": {"file": "value.pt2"},
        **extra,
    }


def test_manifest_refuses_per_agent_without_agents_or_unknown_mode() -> None:
    with pytest.raises(ManifestError, match=r"m\.json\.agent_networks: 'per_agent' needs"):
        parse_manifest(_manifest(agent_networks="per_agent"), "m.json")
    with pytest.raises(ManifestError, match=r"agent_networks: expected one of \('shared', "):
        parse_manifest(_manifest(agents=3, agent_networks="separate"), "m.json")
    parsed = parse_manifest(_manifest(agents=3, agent_networks="per_agent"), "m.json")
    assert parsed.agent_networks == "per_agent"
    assert parse_manifest(_manifest(agents=3), "m.json").agent_networks == "shared"


class _Pooled(nn.Module):
    """A value network that drops the agent dimension: [N, n, 4] → [N, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(A.OBS, 1).to(A.F64)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.linear(observation).sum(1)


def test_network_without_the_agent_dimension_is_refused(tmp_path) -> None:
    # At load time: the exported network is probed on [2, n, *shape].
    export_model(
        tmp_path / "pooled", "pooled", [InputSpec("observation", (A.OBS,), "float64")],
        value_network=_Pooled(), agents=A.AGENTS, agent_networks="per_agent",
    )  # fmt: skip
    with pytest.raises(ManifestError, match=r"value_network: a per_agent value network answers "
                       r"\[N, 3, 1\] .* got \[2, 1\]"):  # fmt: skip
        load_model(tmp_path / "pooled", torch.device("cpu"))
    # On a request: an in-process model whose networks drop it → FAILED_PRECONDITION, no change.
    _, actor_mlp = P.torchrl_mlps(seed=1)
    server_model = P.model(_Pooled(), P.copied(actor_mlp))
    data = A.make_data(2, steps=4, seed=2, shared_done=True)
    with running_server(models={"team": server_model}) as server:
        api = stub(server.target)
        for call, request in (
            (api.ComputeAdvantage,
             pb.ComputeAdvantageRequest(model_name="team", trajectory=A.trajectory(data))),
            (api.ComputeLoss,
             pb.ComputeLossRequest(model_name="team", trajectory=A.trajectory(data),
                                   apply_update=True)),
        ):  # fmt: skip
            error = rpc_error(call, request)
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert (
                "value network output: expected shape [16, 3, 1] ([N, n_agents, 1]: a per_agent "
                "value network keeps the agent dimension), got [16, 1]"
            ) in error.details()
        assert server_model.parameter_version == 0


class _PooledActor(nn.Module):
    """An actor that drops the agent dimension: [N, n, 4] → logits [N, 3]."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(A.OBS, A.ACTIONS).to(A.F64)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.linear(observation).mean(1)


def test_actor_without_the_agent_dimension_is_refused(tmp_path) -> None:
    critic_mlp, _ = P.torchrl_mlps(seed=1)
    export_model(
        tmp_path / "pooled", "pooled", [InputSpec("observation", (A.OBS,), "float64")],
        value_network=critic_mlp, actor_network=_PooledActor(),
        action=ActionSpec("categorical", num_actions=A.ACTIONS),
        agents=A.AGENTS, agent_networks="per_agent",
    )  # fmt: skip
    with pytest.raises(ManifestError, match=r"actor_network: a per_agent actor answers "
                       r"\[N, 3, 3\] .* shape \[2, 3\] for N = 2"):  # fmt: skip
        load_model(tmp_path / "pooled", torch.device("cpu"))
    server_model = P.model(P.copied(critic_mlp), _PooledActor())
    before = snapshot(server_model)
    data = A.make_data(2, steps=4, seed=2, shared_done=True)
    with running_server(models={"team": server_model}) as server:
        error = rpc_error(
            stub(server.target).ComputeLoss,
            pb.ComputeLossRequest(
                model_name="team", trajectory=A.trajectory(data), apply_update=True
            ),
        )
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert (
        "actor network output: expected shape [8, 3, 3] ([N, n_agents, *parameter]: a "
        "per_agent actor keeps the agent dimension), got [8, 3]"
    ) in error.details()
    assert server_model.parameter_version == 0
    for old, new in zip(before, snapshot(server_model), strict=True):
        assert torch.equal(old, new)


def test_request_without_agents_is_refused_by_a_per_agent_model() -> None:
    critic_mlp, actor_mlp = P.torchrl_mlps(seed=3)
    server_model = P.model(P.copied(critic_mlp), P.copied(actor_mlp))
    data = A.make_data(2, steps=4, seed=4, shared_done=False)
    message = A.trajectory(data)  # tensors [2, 4, 3] that, without n_agents, read as [*B, T]
    message.n_agents = 0
    with running_server(models={"team": server_model}) as server:
        error = rpc_error(
            stub(server.target).ComputeAdvantage,
            pb.ComputeAdvantageRequest(model_name="team", trajectory=message),
        )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "trajectory.n_agents: model 'team' serves 3 agents, got 0" in error.details()


def test_a2c_per_agent_networks_match_torchrl() -> None:
    data = A.make_data(2, steps=5, seed=31, shared_done=True)
    critic_mlp, actor_mlp = P.torchrl_mlps(seed=32)
    server_model = P.model(P.copied(critic_mlp), P.copied(actor_mlp))
    with running_server(models={"team": server_model}) as server:
        before = snapshot(server_model)
        response = stub(server.target).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="team", trajectory=A.trajectory(data), a2c=pb.A2CLoss(),
                apply_update=True,
            ),
            timeout=60,
        )  # fmt: skip
        after = snapshot(server_model)
    _, out, critic_grads, actor_grads = _torchrl_loss(critic_mlp, actor_mlp, data, A2CLoss)
    for key in ("loss_objective", "loss_critic", "loss_entropy", "entropy"):
        assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-9), key
    grads = [*P.per_agent_grads(critic_grads), *P.per_agent_grads(actor_grads)]
    for old, new, grad in zip(before, after, grads, strict=True):
        torch.testing.assert_close((old - new) / A.LR, grad, rtol=1e-5, atol=1e-9)


def test_masked_per_agent_batch_equals_torchrl_on_the_unpadded_data() -> None:
    data = A.make_data(2, steps=6, seed=41, shared_done=True)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    padded = A.Data(**{k: v.clone() for k, v in data.__dict__.items()})
    padded.observation[~mask] = float("nan")
    padded.next_observation[~mask] = float("nan")
    padded.reward[~mask] = float("nan")
    padded.action[~mask] = -1  # outside the support: padding is never scored
    critic_mlp, actor_mlp = P.torchrl_mlps(seed=42)
    server_model = P.model(P.copied(critic_mlp), P.copied(actor_mlp))
    message = A.trajectory(padded)
    message.mask.CopyFrom(tensor(mask))
    with running_server(models={"team": server_model}) as server:
        api = stub(server.target)
        advantage = array(
            api.ComputeAdvantage(
                pb.ComputeAdvantageRequest(model_name="team", trajectory=message), timeout=60
            ).advantage
        )
        before = snapshot(server_model)
        response = api.ComputeLoss(
            pb.ComputeLossRequest(
                model_name="team", trajectory=message, ppo_clip=pb.ClipPPOLoss(),
                apply_update=True,
            ),
            timeout=60,
        )  # fmt: skip
        after = snapshot(server_model)
    _, out, critic_grads, actor_grads = _torchrl_loss(critic_mlp, actor_mlp, data, mask=mask)
    # Segment 1 (4 valid steps) alone, through TorchRL's GAE.
    critic, _ = A.torchrl_modules(critic_mlp, actor_mlp)
    expected, _ = _gae(A.tensordict(data)[1:2, :4].clone(), critic)
    torch.testing.assert_close(advantage[1:2, :4], expected.squeeze(-1))
    assert bool((advantage[~mask] == 0).all())
    for key in METRICS:
        assert response.metrics[key] == pytest.approx(out[key].item(), rel=1e-5, abs=1e-9), key
    grads = [*P.per_agent_grads(critic_grads), *P.per_agent_grads(actor_grads)]
    for old, new, grad in zip(before, after, grads, strict=True):
        torch.testing.assert_close((old - new) / A.LR, grad, rtol=1e-5, atol=1e-9)


def test_vtrace_scores_actions_with_the_per_agent_actor() -> None:
    """V-trace with the server's per-agent actor equals V-trace given TorchRL's log π."""
    data = A.make_data(2, steps=5, seed=51, shared_done=True)
    critic_mlp, actor_mlp = P.torchrl_mlps(seed=52)
    server_model = P.model(P.copied(critic_mlp), P.copied(actor_mlp))
    _, policy = A.torchrl_modules(critic_mlp, actor_mlp)
    with torch.no_grad():
        logits = policy.module[0](A.tensordict(data))["agents", "logits"]
    log_pi = torch.distributions.Categorical(logits=logits).log_prob(data.action)
    with_actor = A.trajectory(data)
    given = A.trajectory(data)
    given.log_prob.CopyFrom(tensor(log_pi.contiguous()))
    with running_server(models={"team": server_model}) as server:
        api = stub(server.target)
        answers = [
            array(
                api.ComputeAdvantage(
                    pb.ComputeAdvantageRequest(
                        model_name="team", trajectory=message, vtrace=pb.VTrace()
                    ),
                    timeout=60,
                ).advantage
            )
            for message in (with_actor, given)
        ]
    torch.testing.assert_close(answers[0], answers[1], rtol=1e-12, atol=1e-12)
    assert not torch.equal(log_pi, data.sample_log_prob)  # the importance weights matter


def test_python_client_reads_the_flag_and_sends_a_marl_tensordict() -> None:
    data = A.make_data(2, steps=5, seed=61, shared_done=False)
    critic_mlp, actor_mlp = P.torchrl_mlps(seed=62)
    server_model = P.model(P.copied(critic_mlp), P.copied(actor_mlp))
    td = A.tensordict(data)
    with running_server(models={"team": server_model}) as server:
        client = AdvantageClient(server.target, timeout=60)
        with client:
            info = client.get_model("team")
            result = client.compute_advantage(td.clone(), model="team", agent_group="agents")
    assert (info.n_agents, info.agent_networks) == (A.AGENTS, "per_agent")
    critic, _ = A.torchrl_modules(critic_mlp, actor_mlp)
    expected, target = _gae(td, critic)
    torch.testing.assert_close(result["agents", "advantage"], expected)
    torch.testing.assert_close(result["agents", "value_target"], target)


class _Heads(nn.Module):
    """A composite actor: {"move": logits [N, 3], "aim": (loc, scale) [N, 2] each}."""

    def __init__(self) -> None:
        super().__init__()
        self.move, self.aim = nn.Linear(A.OBS, 3).to(A.F64), nn.Linear(A.OBS, 4).to(A.F64)

    def forward(self, observation: torch.Tensor):
        loc, scale = self.aim(observation).chunk(2, dim=-1)
        return {"move": self.move(observation), "aim": (loc, nn.functional.softplus(scale))}


def test_per_agent_networks_keep_each_agents_output_and_export(tmp_path) -> None:
    torch.manual_seed(71)
    networks = [_Heads() for _ in range(A.AGENTS)]
    module = PerAgentNetworks(networks)
    observation = torch.randn(5, A.AGENTS, A.OBS, dtype=A.F64)
    out = module(observation)
    for agent, network in enumerate(networks):
        alone = network(observation[:, agent])
        torch.testing.assert_close(out["move"][:, agent], alone["move"], rtol=0, atol=0)
        for got, want in zip(out["aim"], alone["aim"], strict=True):
            torch.testing.assert_close(got[:, agent], want, rtol=0, atol=0)
    exported = torch.export.export(
        module, (observation,), dynamic_shapes=(({0: torch.export.Dim("batch")},),)
    ).module()
    again = exported(observation[:3])
    torch.testing.assert_close(again["move"], out["move"][:3])


def test_composite_per_agent_actor_scores_each_agent_with_its_own_heads() -> None:
    """A two-head per-agent actor (categorical + normal): the entropy is the mean over [B, T, n]
    of each agent's own heads' entropies (the normal's summed over its 2 dimensions), and the
    clipped objective uses each agent's log π(move) + log π(aim) against its own behaviour
    log-probability and advantage (TorchRL's GAE), all computed here from each agent's network
    alone (ε = 0.2, no advantage normalisation: ClipPPOLoss's defaults)."""
    torch.manual_seed(81)
    critic_mlp, _ = P.torchrl_mlps(seed=82)
    heads = [_Heads() for _ in range(A.AGENTS)]
    spec = ActionSpec(
        "composite",
        heads=(
            ActionHeadSpec("move", "categorical", num_actions=3),
            ActionHeadSpec("aim", "normal", shape=(2,)),
        ),
    )
    server_model = P.model(P.copied(critic_mlp), PerAgentNetworks(heads))
    server_model.manifest = replace(server_model.manifest, action=spec)
    data = A.make_data(2, steps=5, seed=83, shared_done=True)
    message = A.trajectory(data)
    message.ClearField("action")
    message.action_heads["move"].CopyFrom(tensor(data.action))
    aim_action = torch.randn(2, 5, A.AGENTS, 2, dtype=A.F64)
    message.action_heads["aim"].CopyFrom(tensor(aim_action))
    with running_server(models={"team": server_model}) as server:
        response = stub(server.target).ComputeLoss(
            pb.ComputeLossRequest(model_name="team", trajectory=message, ppo_clip=pb.ClipPPOLoss()),
            timeout=60,
        )
    entropies, log_probs = [], []
    with torch.no_grad():
        for agent, network in enumerate(heads):
            out = network(data.observation[:, :, agent])
            move = torch.distributions.Categorical(logits=out["move"])
            aim = torch.distributions.Normal(*out["aim"])
            entropies.append(move.entropy() + aim.entropy().sum(-1))
            log_probs.append(
                move.log_prob(data.action[:, :, agent])
                + aim.log_prob(aim_action[:, :, agent]).sum(-1)
            )
    expected = torch.stack(entropies, dim=-1).mean().item()
    assert response.metrics["entropy"] == pytest.approx(expected, rel=1e-9)
    critic, _ = A.torchrl_modules(critic_mlp, critic_mlp)
    advantage = _gae(A.tensordict(data), critic)[0].squeeze(-1)
    ratio = (torch.stack(log_probs, dim=-1) - data.sample_log_prob).exp()
    gain = torch.minimum(ratio * advantage, ratio.clamp(0.8, 1.2) * advantage)
    assert response.metrics["loss_objective"] == pytest.approx(-gain.mean().item(), rel=1e-9)
