"""The OpenAPI document (/docs): every route has an example this server answers with 200, the
examples fit their schemas, shapes are the real ones, descriptions send nobody to a source file,
and dtypes are spelled one way."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

ROUTES = [
    ("post", "/v1/advantage"),
    ("post", "/v1/loss"),
    ("get", "/v1/models"),
    ("get", "/v1/models/{name}"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/debug/sample"),
]


@pytest.fixture(scope="module")
def spec(rest_demo_server) -> dict[str, Any]:
    response = httpx.get(f"{rest_demo_server.url}/openapi.json", timeout=60)
    assert response.status_code == 200
    return response.json()


def operations(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return [(method, path) for path, item in spec["paths"].items() for method in item]


def test_the_document_lists_every_route(spec: dict[str, Any]) -> None:
    assert sorted(operations(spec)) == sorted(ROUTES)


def parameter_example(parameter: dict[str, Any]) -> Any:
    """The example the document gives for a parameter (a required one must have one)."""
    if "example" in parameter:
        return parameter["example"]
    if parameter.get("examples"):
        return next(iter(parameter["examples"].values()))["value"]
    assert not parameter.get("required"), f"{parameter['name']}: required, without an example"
    return None


def check_response(response: httpx.Response, operation: dict[str, Any]) -> None:
    assert response.status_code == 200, response.text
    content = operation["responses"]["200"].get("content", {}).get("application/json")
    if content and content.get("schema"):
        Draft202012Validator(content["schema"]).validate(response.json())


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=lambda part: part)
def test_every_example_gets_200(
    http: httpx.Client, spec: dict[str, Any], method: str, path: str
) -> None:
    operation = spec["paths"][path][method]
    if method == "post":
        content = operation["requestBody"]["content"]["application/json"]
        examples = content.get("examples", {})
        assert examples, f"{path}: no example"
        validator = Draft202012Validator(content["schema"])
        for name, example in examples.items():
            assert example.get("summary"), name
            validator.validate(example["value"])  # the schema admits its own example
            check_response(http.post(path, json=example["value"]), operation)
        return
    url, query = path, {}
    for parameter in operation.get("parameters", []):
        value = parameter_example(parameter)
        if value is None:
            continue
        if parameter["in"] == "path":
            url = url.replace("{" + parameter["name"] + "}", str(value))
        else:
            query[parameter["name"]] = value
    check_response(http.get(url, params=query), operation)


def test_the_examples_are_real_requests(spec: dict[str, Any]) -> None:
    """The model-built examples use the demo model's shapes: 4-dim observations, 2 actions."""
    advantage = spec["paths"]["/v1/advantage"]["post"]["requestBody"]["content"]
    sample = advantage["application/json"]["examples"]["sample"]["value"]
    assert sample["model_name"] == "demo"
    trajectory = sample["trajectory"]
    steps = len(trajectory["next.reward"])
    assert [len(trajectory["observation"]), len(trajectory["observation"][0])] == [steps, 4]
    loss = spec["paths"]["/v1/loss"]["post"]["requestBody"]["content"]["application/json"]
    body = loss["examples"]["ppo_clip"]["value"]
    assert body["loss"]["name"] == "ppo_clip" and not body.get("apply_update")
    assert set(body["trajectory"]) >= {"observation", "action", "sample_log_prob"}
    parameters = spec["paths"]["/v1/models/{name}"]["get"]["parameters"]
    assert [p["example"] for p in parameters if p["name"] == "name"] == ["demo"]


def descriptions(node: Any, where: str = "") -> list[tuple[str, str]]:
    """Every description and summary in the document, with where it is."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("description", "summary") and isinstance(value, str):
                found.append((f"{where}.{key}", value))
            else:
                found.extend(descriptions(value, f"{where}.{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(descriptions(value, f"{where}[{index}]"))
    return found


def test_descriptions_give_real_shapes_and_no_source_files(spec: dict[str, Any]) -> None:
    texts = descriptions(spec)
    assert texts
    for where, text in texts:
        assert ".py" not in text and "service/" not in text, (where, text)
    body = spec["paths"]["/v1/advantage"]["post"]["requestBody"]["content"]["application/json"]
    trajectory = body["schema"]["properties"]["trajectory"]["properties"]
    assert "[*B, T, *obs_shape]" in trajectory["observation"]["description"]
    assert "[*B, T + 1, *obs_shape]" in trajectory["observation"]["description"]  # compact
    assert "[K, *obs_shape]" in trajectory["next.observation"]["description"]
    assert "[*B, T, *action_shape]" in trajectory["action"]["description"]
    for key in ("next.reward", "next.done", "state_value", "sample_log_prob"):
        assert "[*B, T]" in trajectory[key]["description"], key
    for route in ("/v1/advantage", "/v1/loss"):
        description = spec["paths"][route]["post"]["description"]
        assert "[*B, T" in description or "/v1/advantage" in description, route


def test_one_dtype_spelling(http: httpx.Client, spec: dict[str, Any]) -> None:
    """Requests, responses and /v1/models all say "float32", never "DTYPE_FLOAT32"."""
    assert "DTYPE_" not in json.dumps(spec)
    assert "DTYPE_" not in http.get("/v1/models").text
    models = spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]
    model = models["application/json"]["schema"]["properties"]["models"]["items"]
    input_dtype = model["properties"]["inputs"]["items"]["properties"]["dtype"]["enum"]
    request = spec["paths"]["/v1/advantage"]["post"]["requestBody"]["content"]
    request_dtype = request["application/json"]["schema"]["properties"]["dtype"]["enum"]
    assert request_dtype == ["float32", "float64"]
    assert set(request_dtype) <= set(input_dtype)
    assert {"float32", "int64", "bool", "uint8"} <= set(input_dtype)


def test_knobs_are_described_per_estimator_and_loss(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/v1/loss"]["post"]["requestBody"]["content"]["application/json"]
    trajectory_losses, dreamer = body["schema"]["oneOf"]  # the DreamerV3 body is the second
    assert dreamer["title"] == "DreamerV3"
    properties = trajectory_losses["properties"]
    estimators = {s.get("title"): s for s in properties["estimator"]["oneOf"]}
    assert set(estimators) == {None, "td0", "td1", "td_lambda", "gae", "vtrace"}
    assert "lmbda" not in estimators["td0"]["properties"]
    assert set(estimators["vtrace"]["properties"]) >= {"rho_thresh", "c_thresh", "lmbda"}
    losses = {s.get("title"): s for s in properties["loss"]["oneOf"]}
    ppo_clip = losses["ppo_clip"]["properties"]
    assert "> 0" in ppo_clip["clip_epsilon"]["description"]
    assert ppo_clip["options"]["properties"]["loss_critic_type"]["enum"] == [
        "l1",
        "l2",
        "smooth_l1",
    ]
