"""REST surface against a real uvicorn + gRPC server: same numbers, same validation."""

from __future__ import annotations

import copy
import re
from html.parser import HTMLParser
from typing import Any

import grpc
import httpx
import pytest
import torch

from service.api.metrics import Metrics
from service.api.rest import RestOptions, create_app
from service.models.demo import demo_model
from service.models.registry import ModelRegistry
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.runtime import Runtime
from service.settings import Settings
from service.wire import json as convert
from service.wire.codec import DTYPE_TO_TORCH, encode_tensor
from tests.support.rest import STEPS, grpc_request, grpc_stub, rest_server, sample, scrape


def tensor_list(message: pb.Tensor) -> list[Any]:
    dtype = DTYPE_TO_TORCH[message.dtype]
    return torch.frombuffer(bytearray(message.raw_data), dtype=dtype).view(*message.shape).tolist()


def batch(body: dict[str, Any], rows: int) -> dict[str, Any]:
    """The sample repeated as `rows` trajectories: [rows, T, ...]."""
    body = copy.deepcopy(body)
    body["trajectory"] = {key: [value] * rows for key, value in body["trajectory"].items()}
    return body


ESTIMATORS = [
    {"name": "td0"},
    {"name": "td1", "gamma": 0.9},
    {"name": "td_lambda", "gamma": 0.97, "lmbda": 0.8, "average_rewards": True},
    {"name": "gae", "gamma": 0.99, "lmbda": 0.95},
    {"name": "gae", "average_gae": True},
    {"name": "vtrace", "gamma": 0.98, "rho_thresh": 1.5, "c_thresh": 0.9, "lmbda": 0.9},
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: "-".join(map(str, e.values())))
def test_rest_equals_grpc(http: httpx.Client, rest_demo_server, estimator: dict) -> None:
    body = sample(http)
    body["estimator"] = estimator
    rest = http.post("/v1/advantage", json=body)
    assert rest.status_code == 200, rest.text
    result = rest.json()
    with grpc_stub(rest_demo_server.grpc_target) as stub:
        reply = stub.ComputeAdvantage(grpc_request(body))
    assert result["model_name"] == reply.model_name == "demo"
    assert result["parameter_version"] == reply.parameter_version
    assert result["shape"] == [STEPS] and result["dtype"] == "float32"
    assert result["advantage"] == tensor_list(reply.advantage)
    assert result["value_target"] == tensor_list(reply.value_target)
    assert result["state_value"] == tensor_list(reply.state_value)
    assert result["next.state_value"] == tensor_list(reply.next_state_value)
    assert set(result["timing"]) == {
        "json_decode_ms", "decode_ms", "network_ms", "estimator_ms", "encode_ms",
    }  # fmt: skip


def test_batch_float64_and_given_values_equal_grpc(http: httpx.Client, rest_demo_server) -> None:
    body = batch(sample(http), 3)
    body["dtype"] = "float64"
    traj = body["trajectory"]
    for key in ("observation", "next.observation", "action", "sample_log_prob"):
        del traj[key]
    traj["state_value"] = [[0.1 * t for t in range(STEPS)]] * 3
    traj["next.state_value"] = [[0.1 * t + 0.05 for t in range(STEPS)]] * 3
    body["estimator"] = {"name": "td_lambda", "lmbda": [[0.9] * STEPS] * 3}
    result = http.post("/v1/advantage", json=body).json()
    assert result["shape"] == [3, STEPS] and result["dtype"] == "float64"
    assert "state_value" not in result  # the request carried them
    message = grpc_request({**body, "estimator": {"name": "td_lambda"}})
    message.td_lambda.lmbda.per_step.CopyFrom(
        encode_tensor(torch.full((3, STEPS), 0.9, dtype=torch.float64))
    )
    with grpc_stub(rest_demo_server.grpc_target) as stub:
        reply = stub.ComputeAdvantage(message)
    assert result["advantage"] == tensor_list(reply.advantage)
    assert result["value_target"] == tensor_list(reply.value_target)


def test_torchrl_shapes_errors_say_the_trailing_1_is_dropped(http: httpx.Client) -> None:
    body = sample(http)
    traj = body["trajectory"]
    for key in ("next.reward", "next.done", "next.terminated", "sample_log_prob"):
        traj[key] = [[value] for value in traj[key]]
    traj["next.done"] = traj["next.done"][:-1]
    response = http.post("/v1/advantage", json={**body, "torchrl_shapes": True})
    assert response.status_code == 400
    assert response.json()["message"] == (
        f"trajectory.next.done: expected shape [{STEPS}] (the reward's [*B, T]), got "
        f"[{STEPS - 1}] (shapes without torchrl_shapes' trailing 1)"
    )
    traj["next.done"] = [[False]] * STEPS
    traj["observation"] = [[0.0, 0.0]] * STEPS  # not per-step: its shape is as sent
    response = http.post("/v1/advantage", json={**body, "torchrl_shapes": True})
    assert response.json()["message"] == (
        f"trajectory.observation: expected shape [{STEPS}, 4] ([*B, T, *shape]), got [{STEPS}, 2]"
    )


def test_torchrl_shapes_and_nested_keys(http: httpx.Client) -> None:
    body = sample(http)
    plain = http.post("/v1/advantage", json=body).json()
    traj = body["trajectory"]
    nested = {"observation": traj["observation"], "action": traj["action"], "next": {}}
    for key, value in traj.items():
        if key.startswith("next."):
            per_step = key != "next.observation"
            nested["next"][key.removeprefix("next.")] = [[v] for v in value] if per_step else value
    nested["sample_log_prob"] = [[v] for v in traj["sample_log_prob"]]
    torchrl = http.post(
        "/v1/advantage", json={**body, "trajectory": nested, "torchrl_shapes": True}
    ).json()
    assert torchrl["shape"] == [STEPS]
    assert torchrl["advantage"] == [[v] for v in plain["advantage"]]
    assert torchrl["value_target"] == [[v] for v in plain["value_target"]]


def grpc_error(target: str, message: pb.ComputeAdvantageRequest) -> tuple[str, str]:
    with grpc_stub(target) as stub, pytest.raises(grpc.RpcError) as raised:
        stub.ComputeAdvantage(message)
    return raised.value.code().name, raised.value.details()


def both_state_values(body: dict[str, Any]) -> None:
    traj = body["trajectory"]
    traj["state_value"] = [0.0] * STEPS
    traj["next.state_value"] = [0.0] * (STEPS - 1)


def nested_done(body: dict[str, Any]) -> None:
    traj = body["trajectory"]
    traj["next"] = {"done": traj.pop("next.done")[:-1]}


def flat_keys(body: dict[str, Any]) -> dict[str, Any]:
    """The body with {"next": {...}} and "done" written as "next.<key>" (for `grpc_request`)."""
    traj = dict(body["trajectory"])
    nested = traj.pop("next", {})
    traj.update({f"next.{key}": value for key, value in nested.items()})
    if "done" in traj:
        traj["next.done"] = traj.pop("done")
    return {**body, "trajectory": traj}


ERROR_CASES = [
    "done-shape",
    "nested-done",
    "done-alias",
    "done-missing",
    "next-state-value",
    "state-value-alone",
    "unknown-model",
    "gamma-range",
    "rho-positive",
    "vtrace-mu",
    "next-obs",
    "obs-shape",
]


# (mutation, status, the field as gRPC names it, as the REST body wrote it): the same check, the
# same message, with the user's own field name.
@pytest.mark.parametrize(
    ("mutate", "status", "grpc_field", "rest_field"),
    [
        (
            lambda b: b["trajectory"].update({"next.done": b["trajectory"]["next.done"][:-1]}),
            400,
            "trajectory.done",
            "trajectory.next.done",
        ),
        (nested_done, 400, "trajectory.done", "trajectory.next.done"),
        (
            lambda b: b["trajectory"].update({"done": b["trajectory"].pop("next.done")[:-1]}),
            400,
            "trajectory.done",
            "trajectory.done",
        ),
        (
            lambda b: b["trajectory"].pop("next.done"),
            400,
            "trajectory.done",
            "trajectory.next.done",
        ),
        (both_state_values, 400, "trajectory.next_state_value", "trajectory.next.state_value"),
        (
            lambda b: b["trajectory"].update(state_value=[0.0] * STEPS),
            400,
            "trajectory.state_value / trajectory.next_state_value",
            "trajectory.state_value / trajectory.next.state_value",
        ),
        (lambda b: b.update(model_name="nope"), 404, "", ""),
        (
            lambda b: b.update(estimator={"name": "gae", "gamma": 1.5}),
            400,
            "gae.gamma.scalar",
            "estimator.gamma",
        ),
        (
            lambda b: b.update(estimator={"name": "vtrace", "rho_thresh": -1.0}),
            400,
            "vtrace.rho_thresh",
            "estimator.rho_thresh",
        ),
        (
            lambda b: b["trajectory"].pop("sample_log_prob") and b.update(estimator="vtrace"),
            400,
            "trajectory.sample_log_prob",
            "trajectory.sample_log_prob",
        ),
        (
            lambda b: b["trajectory"].pop("next.observation"),
            400,
            "trajectory.next_observation",
            "trajectory.next.observation",
        ),
        (
            lambda b: b["trajectory"].update(observation=[[0.0, 0.0]] * STEPS),
            400,
            "trajectory.observation['observation']",
            "trajectory.observation",
        ),
    ],
    ids=ERROR_CASES,
)
def test_same_errors_as_grpc_in_the_bodys_names(
    http: httpx.Client, rest_demo_server, mutate, status: int, grpc_field: str, rest_field: str
) -> None:
    body = sample(http)
    mutate(body)
    response = http.post("/v1/advantage", json=body)
    assert response.status_code == status, response.text
    code, details = grpc_error(rest_demo_server.grpc_target, grpc_request(flat_keys(body)))
    rest = response.json()
    if grpc_field:
        assert details.startswith((f"{grpc_field}:", f"{grpc_field} ")), details
        assert rest["message"].startswith((f"{rest_field}:", f"{rest_field} ")), rest["message"]
        details = details.replace(grpc_field, rest_field)
    assert rest == {"code": code, "message": details}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ("{not json", "body: not valid JSON"),
        ("[1, 2]", "body: expected a JSON object"),
        ('{"trajectory": {}, "extra": 1}', "body: unknown keys ['extra']"),
        ('{"dtype": "float16", "trajectory": {}}', "dtype: expected one of"),
        ('{"trajectory": {"next.reward": [[1, 2], [3]]}}', "trajectory.next.reward: not a rect"),
        ('{"trajectory": {"next.reward": ["a"]}}', "trajectory.next.reward: expected numbers"),
        ('{"trajectory": {"next.done": [0.5]}}', "trajectory.next.done: expected booleans"),
        ('{"trajectory": {"rewards": [1]}}', "trajectory.rewards: unknown key"),
        ('{"estimator": {"name": "ppo"}, "trajectory": {}}', "estimator.name: expected one of"),
        ('{"estimator": {"name": "td0", "lmbda": 0.5}, "trajectory": {}}', "estimator.lmbda: td0"),
        ('{"estimator": {"name": "gae", "average_gae": 1}, "trajectory": {}}', "estimator.avera"),
        (
            '{"torchrl_shapes": true, "trajectory": {"next.reward": [1.0]}}',
            "trajectory.next.reward: expected shape [*B, T, 1]",
        ),
        ('{"trajectory": {"next.done": [true]}}', "trajectory.next.reward: required"),
    ],
)
def test_json_errors_name_the_field(http: httpx.Client, payload: str, field: str) -> None:
    response = http.post(
        "/v1/advantage", content=payload, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "INVALID_ARGUMENT"
    assert body["message"].startswith(field), body["message"]


def test_models_match_grpc_with_requests_spellings(http: httpx.Client, rest_demo_server) -> None:
    """GET /v1/models is ListModels; dtypes and enums are spelled as requests spell them."""
    with grpc_stub(rest_demo_server.grpc_target) as stub:
        listed = stub.ListModels(pb.ListModelsRequest())
    models = http.get("/v1/models").json()
    assert [model["name"] for model in models["models"]] == [m.name for m in listed.models]
    demo = models["models"][0]
    info = listed.models[0]
    assert info.inputs[0].dtype == pb.DTYPE_FLOAT32  # gRPC keeps its enum
    assert info.action.distribution == pb.DISTRIBUTION_CATEGORICAL
    assert demo == {
        "name": "demo",
        "inputs": [{"name": "observation", "shape": [4], "dtype": "float32"}],
        "has_value_network": True,
        "has_actor_network": True,
        "action": {
            "distribution": "categorical",
            "shape": [],
            "dtype": "int64",
            "num_actions": 2,
            "heads": [],  # a composite actor's heads
            "low": 0.0,  # tanh-normal bounds
            "high": 0.0,
        },
        "parameter_version": info.parameter_version,
        "defaults": {"gamma": info.defaults.gamma, "lmbda": info.defaults.lmbda},
        "device": info.device,
        "parameter_dtype": "float32",
        "n_agents": 0,
        "agent_networks": "shared",  # the networks see one agent's rows at a time
        "world_model": None,  # no DreamerV3 world model
        "qvalue_network": None,  # no Q-networks (off-policy losses)
        "target_update": None,
    }
    # the spelling a request takes: the advertised input dtype is a valid request "dtype"
    body = sample(http)
    body["dtype"] = demo["parameter_dtype"]
    assert http.post("/v1/advantage", json=body).status_code == 200
    assert http.get("/v1/models/demo").json() == {"model": demo}
    missing = http.get("/v1/models/nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == "NOT_FOUND"
    assert "no model 'nope'" in missing.json()["message"]


def test_health_and_unknown_routes(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": ["demo"]}
    missing = http.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


def test_body_over_the_size_limit_is_413() -> None:
    limit = 2048
    with (
        rest_server(Settings(max_message_mb=limit / 2**20)) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        small = http.post("/v1/advantage", json={"trajectory": {"next.reward": [1.0]}})
        assert small.status_code == 400  # under the limit: reaches validation
        big = {"trajectory": {"next.reward": [0.5] * 2000}}
        response = http.post("/v1/advantage", json=big)
        assert response.status_code == 413
        assert response.json()["code"] == "RESOURCE_EXHAUSTED"
        assert response.json()["message"].startswith("body: ")
        assert str(limit) in response.json()["message"]
        chunked = http.post(  # no content-length: counted while streaming
            "/v1/advantage",
            content=iter([b'{"trajectory": {"next.reward": [', b"0.5," * 1000]),
            headers={"content-type": "application/json"},
        )
        assert chunked.status_code == 413
        scraped = scrape(http.get("/metrics").text)
        key = (
            "advantage_requests_total",
            (("code", "RESOURCE_EXHAUSTED"), ("estimator", "unknown"),
             ("rpc", "ComputeAdvantage"), ("transport", "rest")),
        )  # fmt: skip
        assert scraped[key] == 2


def test_readyz_and_compute_while_draining() -> None:
    model = demo_model(torch.device("cpu"))
    registry = ModelRegistry({"demo": model})
    state = {"now": "starting"}
    runtime = Runtime(registry)
    options = RestOptions(max_body_bytes=1 << 20, state=lambda: state["now"])
    app = create_app(runtime, None, Metrics([model]), options)  # type: ignore[arg-type]

    async def check() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            assert (await client.get("/readyz")).json()["status"] == "starting"
            state["now"] = "draining"
            response = await client.get("/readyz")
            assert response.status_code == 503 and response.json()["status"] == "draining"
            refused = await client.post("/v1/advantage", json={})
            assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"

    import asyncio

    asyncio.run(check())


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/debug"])
def test_pages_reference_only_local_assets(http: httpx.Client, page: str) -> None:
    html = http.get(page)
    assert html.status_code == 200
    parser = _Assets()
    parser.feed(html.text)
    # script-set URLs (Swagger's `url: '/openapi.json'`, ReDoc's spec-url) count too
    urls = parser.urls + re.findall(r"""(?:url|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""", html.text)
    assert urls, "the page references no assets?"
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), f"{page}: non-local {url}"
        assert http.get(url).status_code == 200, url
    assert "http://" not in html.text.replace(http.base_url.host, "")
    assert "https://" not in html.text


def test_openapi_documents_the_routes(http: httpx.Client) -> None:
    spec = http.get("/openapi.json").json()
    assert {"/v1/advantage", "/v1/models", "/v1/models/{name}", "/healthz", "/readyz",
            "/metrics", "/debug/sample"} <= set(spec["paths"])  # fmt: skip
    post = spec["paths"]["/v1/advantage"]["post"]
    body = post["requestBody"]["content"]["application/json"]
    assert "next.reward" in body["schema"]["properties"]["trajectory"]["properties"]
    assert {"200", "400", "404", "413"} <= set(post["responses"])


@pytest.mark.parametrize(
    "loss",
    [
        {"name": "ppo_clip", "clip_epsilon": 0.1, "options": {"loss_critic_type": "smooth_l1"}},
        {"name": "a2c", "options": {"entropy_coeff": 0.02}},
        "reinforce",
    ],
    ids=lambda loss: loss if isinstance(loss, str) else loss["name"],
)
def test_loss_equals_grpc(http: httpx.Client, rest_demo_server, loss) -> None:
    body = sample(http)
    body["loss"] = loss
    rest = http.post("/v1/loss", json=body)
    assert rest.status_code == 200, rest.text
    result = rest.json()
    message = pb.ComputeLossRequest()
    message.MergeFrom(convert.loss_request_from_json(body, demo_model(torch.device("cpu"))))
    with grpc_stub(rest_demo_server.grpc_target) as stub:
        reply = stub.ComputeLoss(message)
    assert result["loss"] == reply.loss
    assert result["metrics"] == dict(reply.metrics)
    assert result["updated"] is False and result["parameter_version"] == reply.parameter_version
    error = http.post("/v1/loss", json={**body, "loss": {"name": "a2c", "clip_epsilon": 0.2}})
    assert error.status_code == 400
    assert error.json()["message"].startswith("loss.clip_epsilon: a2c has no knob")


def test_cli_rest_options(monkeypatch: pytest.MonkeyPatch) -> None:
    import service.server
    from service import cli

    seen: list[Settings] = []

    async def fake_serve(settings: Settings) -> None:
        seen.append(settings)

    monkeypatch.setattr(service.server, "serve", fake_serve)
    cli.main(["serve"])
    assert (seen[-1].rest_host, seen[-1].rest_port) == ("127.0.0.1", 8080)
    cli.main(["serve", "--rest-port", "0", "--rest-host", "0.0.0.0"])
    assert (seen[-1].rest_host, seen[-1].rest_port) == ("0.0.0.0", 0)
    monkeypatch.setenv("ADVANTAGE_REST_PORT", "9090")
    monkeypatch.setenv("ADVANTAGE_REST_HOST", "::1")
    cli.main(["serve"])
    assert (seen[-1].rest_host, seen[-1].rest_port) == ("::1", 9090)


@pytest.mark.parametrize(
    ("loss", "grpc_field", "rest_message"),
    [
        (
            {"name": "ppo_clip", "clip_epsilon": -1},
            "ppo_clip.clip_epsilon",
            "loss.clip_epsilon: expected a finite value > 0, got -1.0",
        ),
        (
            {"name": "a2c", "options": {"entropy_coeff": -1}},
            "a2c.options.entropy_coeff",
            "loss.options.entropy_coeff: expected a finite value ≥ 0, got -1.0",
        ),
        (
            {"name": "reinforce", "next.done": "short"},
            "trajectory.done",
            "trajectory.next.done: expected shape [12] (the reward's [*B, T]), got [11]",
        ),
    ],
    ids=["ppo-clip-knob", "a2c-option", "done-shape"],
)
def test_loss_errors_name_the_bodys_fields(
    http: httpx.Client, rest_demo_server, loss: dict, grpc_field: str, rest_message: str
) -> None:
    body = sample(http)
    if loss.pop("next.done", None):
        body["trajectory"]["next.done"] = body["trajectory"]["next.done"][:-1]
    body["loss"] = loss
    response = http.post("/v1/loss", json=body)
    assert response.status_code == 400, response.text
    assert response.json() == {"code": "INVALID_ARGUMENT", "message": rest_message}
    message = pb.ComputeLossRequest()
    message.MergeFrom(convert.loss_request_from_json(body, demo_model(torch.device("cpu"))))
    with grpc_stub(rest_demo_server.grpc_target) as stub, pytest.raises(grpc.RpcError) as raised:
        stub.ComputeLoss(message)
    rest_field = rest_message.partition(":")[0]
    assert raised.value.details() == rest_message.replace(rest_field, grpc_field, 1)
