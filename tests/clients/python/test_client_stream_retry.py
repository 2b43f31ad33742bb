"""GetParameters is read again from its start when a server goes away mid-stream.

gRPC retries a server stream only until its first message arrives; after that, a replica that
stops mid-stream would fail the read. The client redoes the read (an idempotent one) as gRPC
retries unary calls: up to the service config's attempts, with a fresh reassembly each time.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from advantage_client import AdvantageClient, AsyncAdvantageClient
from advantage_client.errors import UnavailableError

from tests.support.replication import BrokenStreamServer, raw_parameter_chunks
from tests.support.servers import running_server

CHUNK = 128  # bytes per chunk: the demo model's parameters arrive in many chunks


@pytest.fixture(scope="module")
def recorded() -> tuple[list[bytes], int, dict[str, np.ndarray]]:
    with running_server() as real:
        chunks = raw_parameter_chunks(real.target, CHUNK)
        with AdvantageClient(real.target, timeout=30) as client:
            version, tensors = client.get_parameters(max_chunk_bytes=CHUNK)
    assert len(chunks) > 2
    return chunks, version, tensors


def _same(tensors: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> bool:
    return tensors.keys() == expected.keys() and all(
        np.array_equal(tensors[name], expected[name]) for name in expected
    )


def test_a_stream_cut_after_its_first_chunk_is_read_again(recorded) -> None:
    chunks, version, expected = recorded
    server = BrokenStreamServer(chunks, breaks=2)
    try:
        with AdvantageClient(server.target, timeout=30) as client:
            got_version, tensors = client.get_parameters(max_chunk_bytes=CHUNK)
    finally:
        server.stop()
    assert server.calls == 3  # two cut streams, then a whole one
    assert got_version == version
    assert _same(tensors, expected)  # the cut streams' first chunks were forgotten


def test_the_asyncio_client_reads_again_too(recorded) -> None:
    chunks, version, expected = recorded
    server = BrokenStreamServer(chunks, breaks=1)

    async def read() -> tuple[int, dict[str, np.ndarray]]:
        async with AsyncAdvantageClient(server.target, timeout=30) as client:
            return await client.get_parameters(max_chunk_bytes=CHUNK)

    try:
        got_version, tensors = asyncio.run(read())
    finally:
        server.stop()
    assert server.calls == 2
    assert got_version == version and _same(tensors, expected)


def test_attempts_are_bounded_by_the_retry_policy(recorded) -> None:
    chunks, _, _ = recorded
    server = BrokenStreamServer(chunks, breaks=100)
    try:
        with (
            AdvantageClient(server.target, timeout=30) as client,
            pytest.raises(UnavailableError, match="stream removed"),
        ):
            client.get_parameters(max_chunk_bytes=CHUNK)
    finally:
        server.stop()
    assert server.calls == 5  # DEFAULT_SERVICE_CONFIG's maxAttempts


def test_without_a_retry_policy_the_cut_is_reported(recorded) -> None:
    chunks, _, _ = recorded
    server = BrokenStreamServer(chunks, breaks=1)
    try:
        with (
            AdvantageClient(server.target, timeout=30, service_config=None) as client,
            pytest.raises(UnavailableError),
        ):
            client.get_parameters(max_chunk_bytes=CHUNK)
    finally:
        server.stop()
    assert server.calls == 1
