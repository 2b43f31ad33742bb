"""Off-policy losses over REST: the JSON body becomes the gRPC request (same numbers), td_error
comes back as a list, target_update and refusals mirror gRPC."""

from __future__ import annotations

import httpx
import torch

from service.models.demo_offpolicy import offpolicy_demo_models
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.wire.codec import decode_tensor, encode_tensor
from tests.support.offpolicy import stub
from tests.support.rest import rest_server

CPU = torch.device("cpu")
OBSERVATION = [[0.1, 0.2, 0.3, 0.4], [0.5, -0.1, 0.0, 0.2], [-0.3, 0.3, 0.1, 0.0]]
NEXT = [[0.2, 0.2, 0.3, 0.1], [0.4, -0.2, 0.1, 0.2], [-0.1, 0.3, 0.2, 0.0]]


def _body(**extra) -> dict:
    return {
        "model_name": "demo_dqn",
        "loss": {"name": "dqn", "double_dqn": True, "gamma": 0.9, "loss_function": "smooth_l1"},
        "trajectory": {
            "observation": OBSERVATION,
            "next.observation": NEXT,
            "action": [0, 1, 1],
            "next.reward": [1.0, 0.0, -1.0],
            "next.done": [False, True, False],
            "next.terminated": [False, True, False],
        },
        **extra,
    }


def test_rest_dqn_equals_grpc_and_applies_one_update() -> None:
    with rest_server(models=offpolicy_demo_models(CPU)) as server:
        base = f"http://127.0.0.1:{server.rest_port}"
        reply = httpx.post(f"{base}/v1/loss", json=_body(return_td_error=True), timeout=30)
        assert reply.status_code == 200, reply.text
        over_rest = reply.json()
        expected = stub(server.port).ComputeLoss(
            pb.ComputeLossRequest(
                model_name="demo_dqn",
                dqn=pb.DQNLoss(double_dqn=True, gamma=0.9, loss_function=pb.CRITIC_LOSS_SMOOTH_L1),
                trajectory=pb.Trajectory(
                    observation={"observation": encode_tensor(torch.tensor(OBSERVATION))},
                    next_observation={"observation": encode_tensor(torch.tensor(NEXT))},
                    action=encode_tensor(torch.tensor([0, 1, 1])),
                    reward=encode_tensor(torch.tensor([1.0, 0.0, -1.0])),
                    done=encode_tensor(torch.tensor([False, True, False])),
                    terminated=encode_tensor(torch.tensor([False, True, False])),
                ),
                return_td_error=True,
            )
        )
        assert over_rest["loss"] == expected.loss
        assert over_rest["td_error"] == decode_tensor(expected.td_error, "td").tolist()
        update = httpx.post(
            f"{base}/v1/loss",
            json=_body(apply_update=True, target_update={"hard_interval": 0}),
            timeout=30,
        ).json()
        assert (update["new_parameter_version"], update["targets_updated"]) == (1, True)
        assert update["td_error"] is None
        bad = httpx.post(
            f"{base}/v1/loss",
            json=_body(apply_update=True, target_update={"tau": 2.0}),
            timeout=30,
        )
        assert bad.status_code == 400 and "target_update.tau" in bad.text
        body = _body(apply_update=True)
        body["trajectory"]["action"] = [0, 1, 2]
        refused = httpx.post(f"{base}/v1/loss", json=body, timeout=30)
        assert refused.status_code == 400 and "trajectory.action" in refused.text
        version = stub(server.port).GetModel(pb.GetModelRequest(model_name="demo_dqn"))
        assert version.model.parameter_version == 1  # the refusals applied nothing
