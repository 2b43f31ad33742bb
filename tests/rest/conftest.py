"""Fixtures for the REST surface: one real server (gRPC + REST) for the module tree."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.rest import RestTestServer, rest_server


@pytest.fixture(scope="session")
def rest_demo_server() -> Iterator[RestTestServer]:
    """A real server with the demo model, REST and gRPC on loopback ports."""
    with rest_server() as server:
        yield server


@pytest.fixture()
def http(rest_demo_server: RestTestServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rest_demo_server.url, timeout=60) as client:
        yield client
