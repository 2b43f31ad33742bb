"""/metrics: counters move by exactly the requests sent, over both transports."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry

from service.api.metrics import Metrics, estimator_label, rpc_label
from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.rest import grpc_request, grpc_stub, sample, scrape


def labels(**pairs: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(pairs.items()))


def delta(before: dict, after: dict, name: str, **pairs: str) -> float:
    key = (name, labels(**pairs))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_counters_move_by_exactly_the_requests_sent(http: httpx.Client, rest_demo_server) -> None:
    body = sample(http, steps=10)
    before = scrape(http.get("/metrics").text)

    for _ in range(3):
        assert http.post("/v1/advantage", json=body).status_code == 200
    bad = {**body, "estimator": {"name": "td0", "gamma": 2.0}}
    assert http.post("/v1/advantage", json=bad).status_code == 400
    assert http.get("/v1/models").status_code == 200
    td0 = {**body, "estimator": {"name": "td0"}}
    with grpc_stub(rest_demo_server.grpc_target) as stub:
        stub.ComputeAdvantage(grpc_request(td0))
        stub.ComputeAdvantage(grpc_request(td0))
        with pytest.raises(Exception):  # noqa: B017 - grpc.RpcError
            stub.GetModel(pb.GetModelRequest(model_name="nope"))

    after = scrape(http.get("/metrics").text)
    total = "advantage_requests_total"
    compute = {"rpc": "ComputeAdvantage"}
    assert delta(before, after, total, transport="rest", estimator="gae", code="OK", **compute) == 3
    assert (
        delta(
            before,
            after,
            total,
            transport="rest",
            estimator="td0",
            code="INVALID_ARGUMENT",
            **compute,
        )
        == 1
    )
    assert delta(before, after, total, transport="grpc", estimator="td0", code="OK", **compute) == 2
    assert (
        delta(before, after, total, transport="rest", rpc="ListModels", estimator="none", code="OK")
        == 1
    )
    assert (
        delta(
            before,
            after,
            total,
            transport="grpc",
            rpc="GetModel",
            estimator="none",
            code="NOT_FOUND",
        )
        == 1
    )
    # every request timed; phases and steps only for successes (3 REST GAE + 2 gRPC TD(0))
    latency = "advantage_request_duration_seconds_count"
    assert delta(before, after, latency, transport="rest", rpc="ComputeAdvantage") == 4
    assert delta(before, after, latency, transport="grpc", rpc="ComputeAdvantage") == 2
    for phase in ("decode", "network", "estimator", "encode"):
        name = f"advantage_{phase}_duration_seconds_count"
        assert delta(before, after, name, rpc="ComputeAdvantage", estimator="gae") == 3
        assert delta(before, after, name, rpc="ComputeAdvantage", estimator="td0") == 2
    steps = "advantage_request_steps_sum"
    assert delta(before, after, steps, rpc="ComputeAdvantage", estimator="gae") == 30
    assert delta(before, after, "advantage_request_steps_count", rpc="ComputeAdvantage",
                 estimator="td0") == 2  # fmt: skip
    # nothing in flight between requests (the /metrics scrape itself is not counted)
    assert after[("advantage_requests_in_flight", labels(transport="rest"))] == 0
    assert after[("advantage_requests_in_flight", labels(transport="grpc"))] == 0
    assert after[("advantage_model_parameter_version", labels(model="demo"))] == 0
    assert after[("process_resident_memory_bytes", ())] > 0


def test_metrics_exposition_content_type(http: httpx.Client) -> None:
    response = http.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE advantage_requests_total counter" in response.text
    assert "# TYPE advantage_request_duration_seconds histogram" in response.text


def test_each_server_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()  # same names, no "Duplicated timeseries" error
    assert isinstance(one.registry, CollectorRegistry) and one.registry is not two.registry
    with one.track("grpc", request=pb.ListModelsRequest()) as call:
        call.done(pb.ListModelsResponse())
    assert b'advantage_requests_total{code="OK"' in one.exposition()
    assert b"advantage_requests_total{" not in two.exposition()


def test_labels() -> None:
    assert rpc_label(pb.ComputeAdvantageRequest()) == "ComputeAdvantage"
    assert estimator_label(pb.ComputeAdvantageRequest()) == "gae"  # unset = GAE
    assert estimator_label(pb.ComputeAdvantageRequest(vtrace=pb.VTrace())) == "vtrace"
    assert estimator_label(pb.GetModelRequest()) == "none"
    # ComputeLoss carries both oneofs: the loss names it (it used to say "gae" for every loss).
    assert estimator_label(pb.ComputeLossRequest()) == "ppo_clip"
    assert estimator_label(pb.ComputeLossRequest(reinforce=pb.ReinforceLoss(), gae=pb.GAE())) == (
        "reinforce"
    )


def _sample(text: str, prefix: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(prefix))
    return float(line.rsplit(" ", 1)[1])


def test_recording_is_queued_and_counted_exactly_when_read(monkeypatch) -> None:
    from service.api import metrics as metrics_module

    monkeypatch.setattr(metrics_module, "FOLD_EVERY", 10)
    metrics = Metrics()
    response = pb.ComputeAdvantageResponse(
        advantage=pb.Tensor(shape=[2, 3]), timing=pb.Timing(decode_ms=1.0)
    )
    with metrics.track("grpc", request=pb.ComputeAdvantageRequest()) as call:
        text = metrics.exposition().decode()  # while the call is in flight
        assert _sample(text, 'advantage_requests_in_flight{transport="grpc"}') == 1
        call.done(response)
    for _ in range(24):  # no scrape: the queue never grows past FOLD_EVERY + 1
        with metrics.track("grpc", request=pb.ComputeAdvantageRequest()) as call:
            call.done(response)
        assert len(metrics._finished) <= 11
    text = metrics.exposition().decode()
    assert len(metrics._finished) == 0
    assert _sample(text, 'advantage_requests_in_flight{transport="grpc"}') == 0
    ok = (
        'advantage_requests_total{code="OK",estimator="gae",rpc="ComputeAdvantage",'
        'transport="grpc"}'
    )
    assert _sample(text, ok) == 25
    assert _sample(text, 'advantage_request_steps_sum{estimator="gae",rpc="ComputeAdvantage"}') == (
        25 * 6
    )
    decode = 'advantage_decode_duration_seconds_sum{estimator="gae",rpc="ComputeAdvantage"}'
    assert _sample(text, decode) == pytest.approx(25 * 1e-3)


def test_a_collection_of_the_registry_sees_every_finished_call() -> None:
    from prometheus_client import generate_latest

    metrics = Metrics()
    for _ in range(3):
        with metrics.track("rest", request=pb.ListModelsRequest()) as call:
            call.done(pb.ListModelsResponse())
    text = generate_latest(metrics.registry).decode()  # not through `exposition`
    ok = 'advantage_requests_total{code="OK",estimator="none",rpc="ListModels",transport="rest"}'
    assert _sample(text, ok) == 3
