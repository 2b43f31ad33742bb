"""REST accepts heads, masks and agent layouts: the same numbers as the gRPC request."""

from __future__ import annotations

import httpx
import pytest
import torch

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support import agents as A
from tests.support import composite as C
from tests.support.servers import running_server
from tests.support.wire import array, stub


@pytest.fixture(scope="module")
def server():
    models = {"two_heads": C.model(seed=2), "team": A.model(seed=2)}
    with running_server(models=models, rest=True) as running:
        yield running


def test_rest_heads_and_mask(server) -> None:
    data = C.make_data((2,), steps=5, seed=7)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    body = {
        "model_name": "two_heads",
        "dtype": "float64",
        "trajectory": {
            "observation": data.observation.tolist(),
            "next": {"observation": data.next_observation.tolist(), "reward": data.reward.tolist(),
                     "done": data.done.tolist(), "terminated": data.terminated.tolist()},
            "action": {"move": data.move.tolist(), "aim": data.aim.tolist(),
                       "move_log_prob": data.move_log_prob.tolist(),
                       "aim_log_prob": data.aim_log_prob.tolist()},
            "collector": {"mask": mask.tolist()},
        },
    }  # fmt: skip
    torch.manual_seed(3)  # the tanh head's Monte-Carlo entropy: the same draws for both calls
    reply = httpx.post(f"{server.url}/v1/loss", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    torch.manual_seed(3)
    raw = stub(server.target).ComputeLoss(
        pb.ComputeLossRequest(
            model_name="two_heads", trajectory=C.trajectory(data, per_head=True, mask=mask)
        ),
        timeout=60,
    )
    assert reply.json()["metrics"] == pytest.approx(dict(raw.metrics), rel=1e-9)
    assert "composite_entropy.action.aim_entropy" in reply.json()["metrics"]


def test_rest_agents(server) -> None:
    data = A.make_data(2, steps=4, seed=1, shared_done=False)
    body = {
        "model_name": "team",
        "dtype": "float64",
        "n_agents": A.AGENTS,
        "trajectory": {
            "observation": data.observation.tolist(),
            "next.observation": data.next_observation.tolist(),
            "next.reward": data.reward.tolist(),
            "next.done": data.done.tolist(),
            "next.terminated": data.terminated.tolist(),
        },
    }
    reply = httpx.post(f"{server.url}/v1/advantage", json=body, timeout=60)
    assert reply.status_code == 200, reply.text
    raw = stub(server.target).ComputeAdvantage(
        pb.ComputeAdvantageRequest(model_name="team", trajectory=A.trajectory(data)), timeout=60
    )
    advantage = torch.tensor(reply.json()["advantage"], dtype=torch.float64)
    assert advantage.shape == (2, 4, A.AGENTS)
    torch.testing.assert_close(advantage, array(raw.advantage))


def test_rest_bad_mask_is_400(server) -> None:
    data = A.make_data(1, steps=3, seed=1, shared_done=True)
    body = {
        "model_name": "team",
        "dtype": "float64",
        "n_agents": A.AGENTS,
        "trajectory": {
            "observation": data.observation.tolist(),
            "next.observation": data.next_observation.tolist(),
            "next.reward": data.reward.tolist(),
            "next.done": data.done.tolist(),
            "mask": [[True, True]],
        },
    }
    reply = httpx.post(f"{server.url}/v1/advantage", json=body, timeout=60)
    assert reply.status_code == 400
    assert "trajectory.mask: expected shape [1, 3]" in reply.json()["message"]


def test_debug_sample_of_a_composite_model_is_accepted(server) -> None:
    """The debug page's generated body for a two-head model carries each head's actions and
    log-probability, and both compute routes accept it."""
    sample = httpx.get(
        f"{server.url}/debug/sample", params={"model_name": "two_heads", "steps": 8}, timeout=60
    )
    assert sample.status_code == 200, sample.text
    body = sample.json()
    assert {"action.move", "action.aim", "action.move_log_prob"} <= set(body["trajectory"])
    body["dtype"] = "float64"
    for route in ("advantage", "loss"):
        reply = httpx.post(f"{server.url}/v1/{route}", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
