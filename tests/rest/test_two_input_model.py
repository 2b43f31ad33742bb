"""REST with a model of two inputs (`pixels`, `goal`) and a normal actor: the generated sample,
the OpenAPI examples and the errors use the model's own keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from torch import nn

from service.models.export import export_model
from service.models.loading import load_model
from service.models.manifest import ActionSpec, InputSpec
from tests.support.rest import RestTestServer, rest_server

STEPS = 6


class TwoInputValue(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3 + 2, 1)

    def forward(self, pixels: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([pixels, goal], -1))


class GaussianActor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3 + 2, 2 * 2)

    def forward(self, pixels: torch.Tensor, goal: torch.Tensor):
        loc, raw_scale = self.body(torch.cat([pixels, goal], -1)).chunk(2, -1)
        return loc, nn.functional.softplus(raw_scale) + 1e-3


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[RestTestServer]:
    folder = Path(tmp_path_factory.mktemp("models")) / "reacher"
    torch.manual_seed(0)
    export_model(
        folder,
        "reacher",
        [InputSpec("pixels", (3,)), InputSpec("goal", (2,))],
        value_network=TwoInputValue(),
        actor_network=GaussianActor(),
        action=ActionSpec("normal", shape=(2,)),
        file_format="torchscript",
    )
    with rest_server(models={"reacher": load_model(folder, torch.device("cpu"))}) as running:
        yield running


@pytest.fixture()
def http(server: RestTestServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def sample(http: httpx.Client) -> dict:
    response = http.get("/debug/sample", params={"steps": STEPS})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_sample_and_the_examples_use_the_models_keys(http: httpx.Client) -> None:
    body = sample(http)
    assert set(body["trajectory"]) >= {"pixels", "next.pixels", "goal", "next.goal", "action"}
    assert http.post("/v1/advantage", json=body).status_code == 200
    spec = http.get("/openapi.json").json()
    for route, name in (("/v1/advantage", "sample"), ("/v1/loss", "ppo_clip")):
        content = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"]
        example = content["examples"][name]["value"]
        assert example["model_name"] == "reacher"
        assert len(example["trajectory"]["goal"][0]) == 2
        assert len(example["trajectory"]["action"][0]) == 2
        response = http.post(route, json=example)
        assert response.status_code == 200, response.text
    models = http.get("/v1/models").json()["models"]
    assert models[0]["inputs"] == [
        {"name": "pixels", "shape": [3], "dtype": "float32"},
        {"name": "goal", "shape": [2], "dtype": "float32"},
    ]
    assert models[0]["action"]["distribution"] == "normal"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "goal",
            [[0.0] * 3] * STEPS,
            f"trajectory.goal: expected shape [{STEPS}, 2] ([*B, T, *shape]), got [{STEPS}, 3]",
        ),
        (
            "next.pixels",
            [[0.0] * 3] * (STEPS - 1),
            f"trajectory.next.pixels: expected shape [{STEPS}, 3]",
        ),
        (
            "action",
            [0.0] * STEPS,
            "trajectory.action: expected shape",
        ),
    ],
    ids=["goal", "next-pixels", "action"],
)
def test_errors_name_the_models_keys(http: httpx.Client, key: str, value, message: str) -> None:
    body = sample(http)
    body["trajectory"][key] = value
    route = "/v1/loss" if key == "action" else "/v1/advantage"
    response = http.post(route, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith(message), response.json()["message"]


@pytest.mark.parametrize(
    ("key", "field"), [("goal", "trajectory.*"), ("next.goal", "trajectory.next.*")]
)
def test_a_missing_input_lists_the_keys(http: httpx.Client, key: str, field: str) -> None:
    body = sample(http)
    del body["trajectory"][key]
    response = http.post("/v1/advantage", json=body)
    assert response.status_code == 400
    assert response.json()["message"] == (
        f"{field}: expected keys ['goal', 'pixels'] (model 'reacher'), got ['pixels']"
    )
