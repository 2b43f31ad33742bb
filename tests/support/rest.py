"""A real server (gRPC + REST on loopback ports) on a background event loop, for REST tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import httpx
import torch
from prometheus_client.parser import text_string_to_metric_families

from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from service.settings import Settings
from service.wire.codec import encode_tensor
from tests.support.servers import RunningServer, running_server

# The REST tests use the shared real-server runner with the REST surface switched on.
RestTestServer = RunningServer


@contextmanager
def rest_server(
    settings: Settings | None = None, models: dict[str, Model] | None = None
) -> Iterator[RunningServer]:
    """A started server with REST; stopped on exit."""
    with running_server(settings, models, rest=True) as server:
        yield server


@contextmanager
def grpc_stub(target: str) -> Iterator[pb_grpc.AdvantageServiceStub]:
    with grpc.insecure_channel(target) as channel:
        yield pb_grpc.AdvantageServiceStub(channel)


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text → {(sample name, sorted labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


STEPS = 12


def sample(http: httpx.Client, steps: int = STEPS, seed: int = 0) -> dict[str, Any]:
    response = http.get("/debug/sample", params={"steps": steps, "seed": seed})
    assert response.status_code == 200, response.text
    return response.json()


def grpc_request(body: dict[str, Any]) -> pb.ComputeAdvantageRequest:
    """The ComputeAdvantageRequest a gRPC client would build for the same data (independently of
    the REST converter)."""
    float_dtype = torch.float64 if body.get("dtype") == "float64" else torch.float32
    traj = body["trajectory"]
    message = pb.ComputeAdvantageRequest(model_name=body.get("model_name", ""))
    t = message.trajectory
    for key, field, dtype in (
        ("next.reward", "reward", float_dtype),
        ("next.done", "done", torch.bool),
        ("next.terminated", "terminated", torch.bool),
        ("state_value", "state_value", float_dtype),
        ("next.state_value", "next_state_value", float_dtype),
        ("sample_log_prob", "sample_log_prob", float_dtype),
        ("action", "action", torch.int64),
    ):
        if key in traj:
            getattr(t, field).CopyFrom(encode_tensor(torch.tensor(traj[key], dtype=dtype)))
    if "observation" in traj:
        t.observation["observation"].CopyFrom(encode_tensor(torch.tensor(traj["observation"])))
    if "next.observation" in traj:
        t.next_observation["observation"].CopyFrom(
            encode_tensor(torch.tensor(traj["next.observation"]))
        )
    estimator = body.get("estimator", {"name": "gae"})
    if isinstance(estimator, str):
        estimator = {"name": estimator}
    knobs = getattr(message, estimator["name"])
    knobs.SetInParent()
    for knob, value in estimator.items():
        if knob == "name":
            continue
        if knob == "gamma" or (knob == "lmbda" and estimator["name"] != "vtrace"):
            getattr(knobs, knob).scalar = value
        else:
            setattr(knobs, knob, value)
    return message
