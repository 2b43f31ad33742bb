"""The Python client sends heads, masks and agent layouts (arrays and TorchRL TensorDicts) to
real servers and gets the numbers a hand-built raw request gets."""

from __future__ import annotations

import pytest
import torch
from advantage_client import AdvantageClient, ClipPPO
from tensordict import TensorDict

from service.models.demo import demo_model
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import agents as A
from tests.support import composite as C
from tests.support.servers import running_server
from tests.support.wire import array, full_trajectory, random_batch, stub


@pytest.fixture(scope="module")
def server():
    models = {
        "two_heads": C.model(seed=1),
        "team": A.model(seed=1),
        "demo": demo_model(torch.device("cpu")),
    }
    with running_server(models=models) as running:
        yield running


def _mask(rows: int, steps: int, lengths: list[int]) -> torch.Tensor:
    return torch.arange(steps).expand(rows, steps) < torch.tensor(lengths).unsqueeze(-1)


@pytest.mark.parametrize("form", ["full", "compact"])
def test_mask_from_arrays(server, form: str) -> None:
    batch = random_batch((3,), steps=8, seed=5)
    mask = _mask(3, 8, [8, 5, 3])
    raw = stub(server.target).ComputeAdvantage(
        pb.ComputeAdvantageRequest(model_name="demo", trajectory=full_trajectory(batch, mask=mask)),
        timeout=60,
    )
    with AdvantageClient(server.target, timeout=60) as client:
        result = client.compute_advantage(
            model="demo", reward=batch.reward, done=batch.done, terminated=batch.terminated,
            observation=batch.observation, next_observation=batch.next_observation,
            mask=mask, form=form,
        )  # fmt: skip
    torch.testing.assert_close(result.advantage, array(raw.advantage))
    torch.testing.assert_close(result.value_target, array(raw.value_target))
    assert bool((result.advantage[~mask] == 0).all())


def test_heads_and_mask_from_arrays(server) -> None:
    data = C.make_data((3,), steps=6, seed=2)
    mask = _mask(3, 6, [6, 4, 2])
    torch.manual_seed(0)  # the tanh head's Monte-Carlo entropy: the same draws for both calls
    raw = stub(server.target).ComputeLoss(
        pb.ComputeLossRequest(
            model_name="two_heads", trajectory=C.trajectory(data, per_head=True, mask=mask)
        ),
        timeout=60,
    )
    with AdvantageClient(server.target, timeout=60) as client:
        info = client.get_model("two_heads")
        assert info.action.distribution == "composite"
        assert [(h.name, h.distribution) for h in info.action.heads] == [
            ("action.move", "categorical"), ("action.aim", "tanh_normal"),
        ]  # fmt: skip
        log_probs = {"action.move": data.move_log_prob, "action.aim": data.aim_log_prob}
        torch.manual_seed(0)
        result = client.compute_loss(
            model="two_heads", loss=ClipPPO(), reward=data.reward, done=data.done,
            terminated=data.terminated, observation=data.observation,
            next_observation=data.next_observation, mask=mask,
            action={"action.move": data.move, "action.aim": data.aim},
            sample_log_prob=log_probs,
        )  # fmt: skip
    assert result.metrics == pytest.approx(dict(raw.metrics), rel=1e-12)
    assert "composite_entropy.action.aim_entropy" in result.metrics


def test_torchrl_tensordict_with_nested_heads_and_collector_mask(server) -> None:
    """TorchRL's non-aggregate layout: ("action", head) and ("action", "<head>_log_prob"), plus
    ("collector", "mask")."""
    data = C.make_data((2,), steps=7, seed=3)
    mask = _mask(2, 7, [7, 4])
    td = C.tensordict(data, per_head=True)
    td["collector"] = TensorDict({"mask": mask}, batch_size=td.batch_size)
    torch.manual_seed(0)
    raw = stub(server.target).ComputeLoss(
        pb.ComputeLossRequest(
            model_name="two_heads", trajectory=C.trajectory(data, per_head=True, mask=mask)
        ),
        timeout=60,
    )
    with AdvantageClient(server.target, timeout=60) as client:
        torch.manual_seed(0)
        result = client.compute_loss(td, model="two_heads", in_keys=["observation"])
        torch.manual_seed(0)
        aggregated = client.compute_loss(
            td, model="two_heads", in_keys=["observation"], composite_lp_aggregate=True
        )
    assert result.metrics == pytest.approx(dict(raw.metrics), rel=1e-12)
    assert not any(k.startswith("composite_entropy.") for k in aggregated.metrics)
    assert aggregated.loss == pytest.approx(result.loss, rel=1e-12)


def test_agents_from_arrays(server) -> None:
    data = A.make_data(2, steps=5, seed=4, shared_done=True)
    raw = stub(server.target).ComputeAdvantage(
        pb.ComputeAdvantageRequest(model_name="team", trajectory=A.trajectory(data)), timeout=60
    )
    with AdvantageClient(server.target, timeout=60) as client:
        result = client.compute_advantage(
            model="team", n_agents=A.AGENTS, reward=data.reward, done=data.done,
            terminated=data.terminated, observation=data.observation,
            next_observation=data.next_observation,
        )  # fmt: skip
        loss = client.compute_loss(
            model="team", n_agents=A.AGENTS, reward=data.reward, done=data.done,
            terminated=data.terminated, observation=data.observation,
            next_observation=data.next_observation, action=data.action,
            sample_log_prob=data.sample_log_prob,
        )  # fmt: skip
        assert client.get_model("team").n_agents == A.AGENTS
    assert tuple(result.advantage.shape) == (2, 5, A.AGENTS)
    torch.testing.assert_close(result.advantage, array(raw.advantage))
    raw_loss = stub(server.target).ComputeLoss(
        pb.ComputeLossRequest(model_name="team", trajectory=A.trajectory(data)), timeout=60
    )
    assert loss.metrics == pytest.approx(dict(raw_loss.metrics), rel=1e-12)


def test_client_refuses_agents_with_the_compact_form(server) -> None:
    data = A.make_data(1, steps=3, seed=0, shared_done=True)
    with AdvantageClient(server.target, timeout=60) as client, pytest.raises(ValueError):
        client.compute_advantage(
            model="team", n_agents=A.AGENTS, reward=data.reward, done=data.done,
            observation=data.observation, next_observation=data.next_observation,
            form="compact",
        )  # fmt: skip


def test_torchrl_marl_tensordict(server) -> None:
    """TorchRL's MARL layout (per-agent entries under "agents", batch [B, T, n]) with
    agent_group="agents": the result gets ("agents", "advantage") [B, T, n, 1]."""
    data = A.make_data(2, steps=5, seed=6, shared_done=False)
    td = A.tensordict(data)
    raw = stub(server.target).ComputeAdvantage(
        pb.ComputeAdvantageRequest(model_name="team", trajectory=A.trajectory(data)), timeout=60
    )
    raw_loss = stub(server.target).ComputeLoss(
        pb.ComputeLossRequest(model_name="team", trajectory=A.trajectory(data)), timeout=60
    )
    with AdvantageClient(server.target, timeout=60) as client:
        out = client.compute_advantage(td, model="team", agent_group="agents")
        loss = client.compute_loss(td, model="team", agent_group="agents", in_keys=["observation"])
    assert out is not td and ("agents", "advantage") not in td.keys(True, True)
    assert tuple(out["agents", "advantage"].shape) == (2, 5, A.AGENTS, 1)
    torch.testing.assert_close(out["agents", "advantage"].squeeze(-1), array(raw.advantage))
    torch.testing.assert_close(out["agents", "value_target"].squeeze(-1), array(raw.value_target))
    assert loss.metrics == pytest.approx(dict(raw_loss.metrics), rel=1e-12)
