"""A real server (gRPC + REST on loopback ports) on a background event loop, for REST tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from prometheus_client.parser import text_string_to_metric_families

from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from service.settings import Settings
from tests.conftest import RunningServer, running_server

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
