"""POST /v1/loss accepts the DreamerV3 losses: the same numbers and statuses as gRPC."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import torch
from advantage_client import AdvantageClient, DreamerV3Model
from jsonschema import Draft202012Validator

from service.settings import Settings
from tests.support.rest import rest_server

B, T = 2, 5


def _replay() -> dict:
    rng = np.random.default_rng(0)
    is_first = np.zeros((B, T), dtype=bool)
    is_first[:, 0] = True
    return {
        "observation": rng.normal(size=(B, T, 3)).astype(np.float32),
        "action": rng.uniform(-1, 1, size=(B, T, 1)).astype(np.float32),
        "reward": rng.normal(size=(B, T)).astype(np.float32),
        "is_first": is_first,
    }


@pytest.fixture(scope="module")
def server():
    with rest_server(Settings(dreamer_demo=True)) as running:
        yield running


def test_rest_model_loss_equals_grpc(server) -> None:
    replay = _replay()
    body = {
        "model_name": "dreamer-demo",
        "loss": {"name": "dreamer_v3_model", "kl_mode": "separate", "free_bits": 0.5},
        "replay": {k: v.tolist() for k, v in replay.items()},
        "return_posterior": True,
    }
    # The server runs in this process: the same seed gives both calls the same posterior draws.
    torch.manual_seed(3)
    with httpx.Client(base_url=server.url, timeout=60) as http:
        rest = http.post("/v1/loss", json=body)
    assert rest.status_code == 200, rest.text
    answer = rest.json()
    torch.manual_seed(3)
    with AdvantageClient(server.target, timeout=60) as client:
        grpc_answer = client.dreamer_loss(
            DreamerV3Model(kl_mode="separate", free_bits=0.5),
            model="dreamer-demo",
            replay=replay,
            return_posterior=True,
        )
    assert answer["metrics"] == pytest.approx(grpc_answer.metrics, rel=1e-6)
    assert {"loss_model_dynamic", "loss_model_representation"} <= set(answer["metrics"])
    assert answer["loss"] == pytest.approx(grpc_answer.loss, rel=1e-6)
    for key in ("state", "belief"):
        assert np.array_equal(
            np.array(answer["posterior_latents"][key], dtype=np.float32),
            grpc_answer.posterior_latents[key],
        )
    assert answer["updated"] is False


def test_rest_errors_mirror_grpc(server) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        horizon = http.post(
            "/v1/loss",
            json={
                "model_name": "dreamer-demo",
                "loss": {"name": "dreamer_v3_actor", "imagination": {"imagination_horizon": 9999}},
                "starting_latents": {"state": [[0.0] * 16], "belief": [[0.0] * 16]},
            },
        )
        missing = http.post(
            "/v1/loss",
            json={
                "model_name": "demo",
                "loss": "dreamer_v3_actor",
                "starting_latents": {"state": [[0.0] * 16], "belief": [[0.0] * 16]},
            },
        )
        shape = http.post(
            "/v1/loss",
            json={
                "model_name": "dreamer-demo",
                "loss": "dreamer_v3_actor",
                "starting_latents": {"state": [[0.0] * 15], "belief": [[0.0] * 16]},
            },
        )
    assert horizon.status_code == 413, horizon.text  # the service's HTTP for RESOURCE_EXHAUSTED
    assert horizon.json()["code"] == "RESOURCE_EXHAUSTED"
    assert "imagination_horizon: 9999 steps" in horizon.text
    assert missing.status_code == 412 and missing.json()["code"] == "FAILED_PRECONDITION"
    assert "world_model section" in missing.text
    assert shape.status_code == 400 and "starting_latents['state']" in shape.text


def test_the_openapi_document_admits_dreamer_bodies(server) -> None:
    """/docs describes the DreamerV3 body: a real one validates, a trajectory body mixed into it
    does not, and the four losses are listed."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        spec = http.get("/openapi.json").json()
    content = spec["paths"]["/v1/loss"]["post"]["requestBody"]["content"]["application/json"]
    validator = Draft202012Validator(content["schema"])
    body = {
        "model_name": "dreamer-demo",
        "loss": {"name": "dreamer_v3", "actor": {"imagination": {"imagination_horizon": 5}}},
        "replay": {k: v.tolist() for k, v in _replay().items()},
        "apply_update": False,
    }
    validator.validate(body)
    validator.validate({**body, "loss": "dreamer_v3_model"})
    assert not validator.is_valid({**body, "loss": "not_a_loss"})
    assert not validator.is_valid({**body, "trajectory": {"next.reward": [[0.0]]}})
    dreamer = next(s for s in content["schema"]["oneOf"] if s.get("title") == "DreamerV3")
    assert dreamer["properties"]["loss"]["oneOf"][0]["enum"] == [
        "dreamer_v3_actor",
        "dreamer_v3_value",
        "dreamer_v3_model",
        "dreamer_v3",
    ]
