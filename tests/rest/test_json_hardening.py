"""Bad JSON is the client's 400 naming the field, never the server's 500 (issue 15, findings 6,
9, 10 and 14, REST parts), and REST's JSON work stays off the compute pool."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api.rest.context import MAX_JSON_DEPTH
from service.api.rest.routes import compute
from service.estimators.registry import ESTIMATORS
from service.losses.registry import LOSSES
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from service.wire.codec import encode_tensor
from service.wire.json import LOSS_REQUEST_KEYS, PER_STEP_KEYS, REQUEST_KEYS
from tests.support.rest import RestTestServer, grpc_request, grpc_stub, rest_server, sample

JSON = {"content-type": "application/json"}


def post(http: httpx.Client, route: str, body: Any) -> httpx.Response:
    """POST `body` as JSON text (json.dumps writes huge integers exactly)."""
    return http.post(route, content=json.dumps(body), headers=JSON)


def refused(response: httpx.Response, message: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == "INVALID_ARGUMENT"
    assert response.json()["message"].startswith(message), response.json()["message"]


# --- finding 6: flat and nested at once; booleans as rewards ------------------------------------


def test_flat_and_nested_key_at_once_is_refused(http: httpx.Client) -> None:
    body = sample(http)
    body["trajectory"]["next"] = {"reward": [0.0] * len(body["trajectory"]["next.reward"])}
    refused(
        post(http, "/v1/advantage", body),
        'trajectory.next.reward: given both flat ("next.reward") and nested '
        '({"next": {"reward"}}); send one',
    )
    alias = sample(http)
    alias["trajectory"]["reward"] = alias["trajectory"]["next.reward"]
    refused(post(http, "/v1/advantage", alias), "trajectory.reward: given together with trajectory")


@pytest.mark.parametrize("key", ["next.reward", "state_value", "sample_log_prob", "observation"])
def test_booleans_are_not_numbers(http: httpx.Client, rest_demo_server, key: str) -> None:
    body = sample(http)
    traj = body["trajectory"]
    if key == "state_value":  # the demo model computes values; send both, as booleans
        traj["next.state_value"] = [0.0] * len(traj["next.reward"])
    source = traj["next.reward"] if key == "state_value" else traj[key]
    traj[key] = torch.tensor(source).gt(0).tolist()  # same shape, true/false
    route = "/v1/loss" if key == "sample_log_prob" else "/v1/advantage"
    refused(post(http, route, body), f"trajectory.{key}: expected numbers, got booleans")
    if key == "next.reward":  # gRPC refuses a bool reward too
        message = grpc_request(sample(http))
        message.trajectory.reward.CopyFrom(encode_tensor(torch.tensor(traj[key])))
        with (
            grpc_stub(rest_demo_server.grpc_target) as stub,
            pytest.raises(grpc.RpcError) as raised,
        ):
            stub.ComputeAdvantage(message)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_booleans_are_not_knob_numbers_nor_integers(http: httpx.Client) -> None:
    body = sample(http)
    refused(
        post(http, "/v1/advantage", {**body, "estimator": {"name": "gae", "gamma": True}}),
        "estimator.gamma: expected a number in [0, 1] or a per-step list, got true",
    )
    refused(
        post(http, "/v1/loss", {**body, "expected_parameter_version": True}),
        "expected_parameter_version: expected an integer",
    )
    body["trajectory"]["action"] = [True] * len(body["trajectory"]["action"])
    refused(post(http, "/v1/loss", body), "trajectory.action: expected integers (int64), got bool")
    fractional = sample(http)
    fractional["trajectory"]["action"] = [0.5] * len(fractional["trajectory"]["action"])
    refused(post(http, "/v1/loss", fractional), "trajectory.action: expected integers (int64)")
    whole = sample(http)  # 1.0 is the JSON number 1
    whole["trajectory"]["action"] = [float(a) for a in whole["trajectory"]["action"]]
    assert post(http, "/v1/loss", whole).status_code == 200


# --- finding 9: what answered 500 ----------------------------------------------------------------

HUGE = 10**400


@pytest.mark.parametrize(
    ("route", "change", "message"),
    [
        (
            "/v1/advantage",
            {"estimator": {"name": "gae", "gamma": HUGE}},
            "estimator.gamma: expected a number in [0, 1], got an integer of 401 digits",
        ),
        (
            "/v1/advantage",
            {"estimator": {"name": "vtrace", "rho_thresh": HUGE}},
            "estimator.rho_thresh: expected a finite number > 0, got an integer of 401 digits",
        ),
        (
            "/v1/loss",
            {"loss": {"name": "ppo_clip", "clip_epsilon": HUGE}},
            "loss.clip_epsilon: expected a finite number > 0, got an integer of 401 digits",
        ),
        (
            "/v1/loss",
            {"loss": {"name": "a2c", "options": {"entropy_coeff": -HUGE}}},
            "loss.options.entropy_coeff: expected a finite number ≥ 0, got an integer of 401",
        ),
        (
            "/v1/loss",
            {"expected_parameter_version": 2**70},
            "expected_parameter_version: expected an integer from -9223372036854775808 to "
            "9223372036854775807, got an integer of 22 digits",
        ),
        ("/v1/advantage", {"form": ["full"]}, "form: expected one of ['full', 'compact'], got"),
        ("/v1/advantage", {"dtype": ["float32"]}, "dtype: expected one of"),
        ("/v1/advantage", {"estimator": {"name": ["gae"]}}, "estimator.name: expected one of"),
        ("/v1/loss", {"loss": {"name": {"a": 1}}}, "loss.name: expected one of"),
        (
            "/v1/loss",
            {"loss": {"name": "a2c", "options": {"loss_critic_type": [1]}}},
            "loss.options.loss_critic_type: expected one of",
        ),
        ("/v1/advantage", {"model_name": ["demo"]}, "model_name: expected a string, got"),
        ("/v1/loss", {"behaviour_distribution": []}, "behaviour_distribution: expected an obj"),
        ("/v1/loss", {"apply_update": "yes"}, 'apply_update: expected true or false, got "yes"'),
    ],
    ids=["gamma", "rho_thresh", "clip_epsilon", "entropy_coeff", "version", "form", "dtype",
         "estimator-name", "loss-name", "enum", "model_name", "behaviour", "apply_update"],
)  # fmt: skip
def test_values_that_answered_500_are_400_naming_the_field(
    http: httpx.Client, route: str, change: dict, message: str
) -> None:
    refused(post(http, route, {**sample(http), **change}), message)


@pytest.mark.parametrize(
    "value",
    [HUGE, -HUGE, 2**64, [HUGE] * 12, [[1.0]] * 12, [None] * 12],
    ids=["huge", "-huge", "2**64", "list-of-huge", "extra-dim", "nulls"],
)
def test_tensor_values_out_of_range_name_the_field(http: httpx.Client, value: Any) -> None:
    body = sample(http)
    body["trajectory"]["action"] = value
    response = post(http, "/v1/loss", body)
    assert response.status_code == 400, response.text
    assert response.json()["message"].startswith("trajectory.action: "), response.text


def test_huge_integers_in_tensors(http: httpx.Client) -> None:
    body = sample(http)
    body["trajectory"]["next.reward"][0] = HUGE
    refused(post(http, "/v1/advantage", body), "trajectory.next.reward: expected numbers within")
    refused(  # over Python's 4,300-digit limit: not a number json will read
        http.post(
            "/v1/advantage",
            content='{"trajectory": {"next.reward": [' + "9" * 5000 + "]}}",
            headers=JSON,
        ),
        "body: not valid JSON",
    )


@pytest.mark.parametrize("depth", [65, 900, 5000, 100_000])
def test_deep_json_is_refused_naming_the_body(http: httpx.Client, depth: int) -> None:
    payload = "[" * depth + "]" * depth
    refused(
        http.post("/v1/advantage", content=payload, headers=JSON),
        f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels",
    )
    nested = '{"trajectory": {"next.reward": ' + "[" * depth + "1" + "]" * depth + "}}"
    refused(http.post("/v1/loss", content=nested, headers=JSON), "body: JSON nested deeper")


def test_depth_limit_counts_brackets_outside_strings_only(http: httpx.Client) -> None:
    inner = MAX_JSON_DEPTH - 2  # body object + trajectory object + the list
    at_limit = '{"trajectory": {"next.reward": ' + "[" * inner + "1" + "]" * inner + "}}"
    response = http.post("/v1/advantage", content=at_limit, headers=JSON)
    assert response.status_code == 400 and "nested deeper" not in response.text, response.text
    brackets = '{"model_name": "' + "[{" * 100 + '", "trajectory": {}}'
    response = http.post("/v1/advantage", content=brackets, headers=JSON)
    assert response.status_code == 404, response.text  # read fine: no such model


@pytest.mark.parametrize(
    ("seed", "message"),
    [(2**70, "seed: expected 0 to 9223372036854775807"), (-1, "seed: expected 0 to"),
     ("1.5", "query.seed: ")],
)  # fmt: skip
def test_debug_sample_seed_out_of_range_is_json_400(
    http: httpx.Client, seed: Any, message: str
) -> None:
    refused(http.get("/debug/sample", params={"seed": seed}), message)


def test_debug_sample_largest_seed(http: httpx.Client) -> None:
    response = http.get("/debug/sample", params={"seed": 2**63 - 1, "steps": 4})
    assert response.status_code == 200, response.text


# --- finding 14: empty lists ---------------------------------------------------------------------


def test_empty_lists_get_the_grpc_answer(http: httpx.Client, rest_demo_server) -> None:
    body = {
        "trajectory": {
            "observation": [],
            "next.observation": [],
            "next.reward": [],
            "next.done": [],
            "next.terminated": [],
        }
    }
    response = post(http, "/v1/advantage", body)
    assert "expected booleans" not in response.text
    message = pb.ComputeAdvantageRequest()
    trajectory = message.trajectory
    trajectory.reward.CopyFrom(encode_tensor(torch.empty(0)))
    trajectory.done.CopyFrom(encode_tensor(torch.empty(0, dtype=torch.bool)))
    trajectory.terminated.CopyFrom(encode_tensor(torch.empty(0, dtype=torch.bool)))
    trajectory.observation["observation"].CopyFrom(encode_tensor(torch.empty(0)))
    trajectory.next_observation["observation"].CopyFrom(encode_tensor(torch.empty(0)))
    trajectory.form = pb.TRAJECTORY_FORM_FULL
    message.gae.SetInParent()
    with grpc_stub(rest_demo_server.grpc_target) as stub, pytest.raises(grpc.RpcError) as raised:
        stub.ComputeAdvantage(message)
    assert response.status_code == 400
    details = raised.value.details()
    assert details.startswith("trajectory.reward: ")
    message = "trajectory.next.reward: " + details.removeprefix("trajectory.reward: ")
    assert response.json() == {"code": raised.value.code().name, "message": message}


def test_empty_bool_lists_are_empty_bool_tensors(http: httpx.Client) -> None:
    body = sample(http)
    body["trajectory"]["next.done"] = [[]]
    response = post(http, "/v1/advantage", body)
    refused(response, "trajectory.next.done: expected shape")  # a shape error, not a type error


# --- finding 10: REST's JSON work has its own threads --------------------------------------------


@pytest.fixture(scope="module")
def own_server() -> Iterator[RestTestServer]:
    """A server of its own: the tests below block its parser or train its model."""
    with rest_server(Settings(workers=2)) as server:
        yield server


def test_parsing_rest_bodies_never_holds_the_compute_pool(
    own_server: RestTestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two REST bodies stuck in parsing (as two 56 MB bodies would be, for seconds) leave both
    compute threads free: a gRPC computation is answered meanwhile."""
    release, started = threading.Event(), threading.Semaphore(0)
    parse = compute.parse_json

    def slow_parse(data: bytes) -> Any:
        started.release()
        release.wait(60)
        return parse(data)

    monkeypatch.setattr(compute, "parse_json", slow_parse)
    with httpx.Client(base_url=own_server.url, timeout=120) as http:
        body = sample(http)
        with ThreadPoolExecutor(2) as posters:
            posts = [posters.submit(post, http, "/v1/advantage", body) for _ in range(2)]
            try:
                assert started.acquire(timeout=30), "no REST body reached the parser"
                started.acquire(timeout=0.5)  # the second one, where it can run at once
                with grpc_stub(own_server.grpc_target) as stub:
                    reply = stub.ComputeAdvantage(grpc_request(body), timeout=10)
                assert list(reply.advantage.shape) == [len(body["trajectory"]["next.reward"])]
            finally:
                release.set()
            assert [p.result().status_code for p in posts] == [200, 200]


# --- fuzz: random JSON in every request field, never a 5xx ---------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**450), max_value=10**450),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**309]),
    st.floats(),
    st.text(max_size=6),
    st.sampled_from(["full", "compact", "float64", "gae", "vtrace", "a2c", "ppo_kl", "l2"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
KNOBS = sorted(
    {knob for kind in ESTIMATORS.values() for knob in kind.knobs}
    | {knob for kind in LOSSES.values() for knob in kind.knobs}
)
TRAJECTORY_KEYS = [
    *PER_STEP_KEYS, "observation", "next.observation", "action", "next", "next.next", "unknown",
]  # fmt: skip
PATHS = [
    *[(key,) for key in (*LOSS_REQUEST_KEYS, "extra")],
    ("estimator", "name"),
    ("loss", "name"),
    ("loss", "options"),
    ("behaviour_distribution", "logits"),
    *[("estimator", knob) for knob in KNOBS],
    *[("loss", knob) for knob in KNOBS],
    *[("loss", "options", knob) for knob in KNOBS],
    *[("trajectory", key) for key in TRAJECTORY_KEYS],
    *[("trajectory", "next", key) for key in ("reward", "done", "observation")],
]


def _set(body: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(body.get(part), dict):
            body[part] = {} if not isinstance(body.get(part), str) else {"name": body[part]}
        body = body[part]
    body[path[-1]] = value


@st.composite
def mangled_bodies(draw: st.DrawFn, base: dict) -> Any:
    if draw(st.integers(0, 9)) == 0:  # now and then, not even an object
        return draw(VALUES)
    body = copy.deepcopy(base)
    body["estimator"] = {"name": draw(st.sampled_from(sorted(ESTIMATORS)))}
    body["loss"] = {"name": draw(st.sampled_from(sorted(LOSSES)))}
    for path, value in draw(st.lists(st.tuples(st.sampled_from(PATHS), VALUES), max_size=4)):
        _set(body, path, value)
    return body


@pytest.fixture(scope="module")
def fuzz_base(own_server: RestTestServer) -> dict:
    with httpx.Client(base_url=own_server.url) as http:
        return sample(http, steps=5)


@pytest.mark.parametrize("route", ["/v1/advantage", "/v1/loss"])
def test_fuzzed_bodies_never_answer_5xx(
    own_server: RestTestServer, fuzz_base: dict, route: str
) -> None:
    with httpx.Client(base_url=own_server.url, timeout=60) as http:

        @settings(
            max_examples=120,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(body=mangled_bodies(fuzz_base))
        def check(body: Any) -> None:
            if route == "/v1/advantage" and isinstance(body, dict):
                for key in set(LOSS_REQUEST_KEYS) - set(REQUEST_KEYS):
                    body.pop(key, None)  # or every body is refused for its unknown keys
            response = http.post(route, content=json.dumps(body), headers=JSON)
            assert response.status_code < 500, (body, response.text)
            if response.status_code >= 400:
                assert set(response.json()) == {"code", "message"}

        check()
