"""Shared fixtures: a real advantage-service gRPC server on a loopback port.

Helpers live in `tests/support/` and are imported as `tests.support.<module>`, never from another
test module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import RunningServer, running_server


@pytest.fixture(scope="session")
def demo_server() -> Iterator[RunningServer]:
    """One real server with the built-in demo model, shared by the session."""
    with running_server() as server:
        yield server


@pytest.fixture(scope="session")
def grpc_target(demo_server: RunningServer) -> str:
    """The "127.0.0.1:PORT" of a real server running the built-in demo model."""
    return demo_server.target
