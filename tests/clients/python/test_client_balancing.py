"""Client-side load balancing and retries (the gRPC service config): target lists, dns:///
names, round_robin over replicas, retries of UNAVAILABLE, health-checked picks,
min_parameter_version."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import numpy as np
import pytest
from advantage_client import (
    DEFAULT_SERVICE_CONFIG,
    AdvantageClient,
    AsyncAdvantageClient,
    FailedPreconditionError,
    UnavailableError,
)
from advantage_client.client import channel_options, channel_target

from service.settings import Settings
from tests.support.replication import SERVICE, SERVING, RefusingServer, wait_until
from tests.support.replication import health as health_of
from tests.support.servers import RunningServer, running_server


def batch(seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {
        "reward": g.standard_normal((2, 6)).astype(np.float32),
        "done": np.zeros((2, 6), dtype=bool),
        "observation": g.standard_normal((2, 6, 4)).astype(np.float32),
        "next_observation": g.standard_normal((2, 6, 4)).astype(np.float32),
    }


@pytest.fixture()
def refusing() -> Iterator[RefusingServer]:
    server = RefusingServer()
    try:
        yield server
    finally:
        server.stop()


def grpc_requests(server: RunningServer, rpc: str = "ComputeAdvantage") -> float:
    """How many gRPC `rpc` calls `server` answered (its metrics)."""
    server.server.metrics.fold()  # the finished calls still queued for the metrics
    counter = server.server.metrics.requests
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels.get("rpc") == rpc
    )


# --- the channel's target and configuration ----------------------------------------------------


def test_target_lists_become_one_ipv4_or_ipv6_target() -> None:
    assert channel_target("localhost:50051") == "localhost:50051"
    assert channel_target("dns:///replicas.svc:50051") == "dns:///replicas.svc:50051"
    assert channel_target(["10.0.0.7:1", "10.0.0.8:2"]) == "ipv4:///10.0.0.7:1,10.0.0.8:2"
    assert channel_target(("[::1]:1", "[fe80::2]:3")) == "ipv6:///[::1]:1,[fe80::2]:3"
    for bad, message in (
        ([], "non-empty list"),
        (["replica-0.svc:50051"], "use a 'dns:///name:port' target"),
        (["10.0.0.7"], "is not 'ip:port'"),
        (["::1:5"], "is not 'ip:port'"),
        (["10.0.0.7:1", "[::1]:2"], "mixes IPv4 and IPv6"),
    ):
        with pytest.raises(ValueError, match=message):
            channel_target(bad)


def test_default_service_config_balances_checks_health_and_retries_unavailable() -> None:
    options = dict(channel_options(64, [], DEFAULT_SERVICE_CONFIG))
    config = json.loads(options["grpc.service_config"])
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": SERVICE}
    retried, never = config["methodConfig"]
    assert retried["name"] == [{"service": SERVICE}]
    assert retried["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert 4 <= retried["retryPolicy"]["maxAttempts"] <= 5
    assert never == {"name": [{"service": SERVICE, "method": "SetParameters"}]}
    assert options["grpc.enable_retries"] == 1
    assert "grpc.service_config" not in dict(channel_options(64, [], None))
    mine = [("grpc.service_config", "{}")]
    assert channel_options(64, mine, DEFAULT_SERVICE_CONFIG)[-1] == mine[0]
    assert [name for name, _ in channel_options(64, mine, DEFAULT_SERVICE_CONFIG)].count(
        "grpc.service_config"
    ) == 1


# --- against real servers ----------------------------------------------------------------------


def test_unavailable_answers_are_retried_on_the_next_server(refusing: RefusingServer) -> None:
    with (
        running_server() as real,
        AdvantageClient([refusing.target, real.target], timeout=60) as client,
    ):
        results = [client.compute_advantage(**batch(seed)) for seed in range(8)]
        assert [r.advantage.shape for r in results] == [(2, 6)] * 8
        assert [m.name for m in client.list_models()] == ["demo"]
        assert refusing.calls > 0  # round_robin sent some there; each was retried
    with (
        AdvantageClient(refusing.target, timeout=60, service_config=None) as plain,
        pytest.raises(UnavailableError, match="refusing server"),
    ):
        plain.compute_advantage(**batch())


def test_a_server_that_is_not_serving_gets_no_calls() -> None:
    with (
        running_server() as real,
        running_server(Settings(follow="127.0.0.1:1")) as syncing,  # never catches up
        AdvantageClient([syncing.target, real.target], timeout=60) as client,
    ):
        assert health_of(syncing.target) != SERVING
        for seed in range(6):
            assert client.compute_advantage(**batch(seed)).parameter_version == 0
        assert grpc_requests(syncing) == 0 and grpc_requests(real) == 6


def test_round_robin_over_replicas_with_read_your_writes() -> None:
    with running_server() as learner:
        follow = Settings(follow=learner.target)
        with (
            running_server(follow) as one,
            running_server(follow) as two,
            AdvantageClient(learner.target, timeout=60) as writer,
            AdvantageClient([one.target, two.target], timeout=60) as reader,
        ):
            for replica in (one, two):
                wait_until(lambda r=replica: health_of(r.target) == SERVING, "a replica's copy")
            version, params = writer.get_parameters(as_="numpy")
            for step in range(1, 4):
                moved = {name: value + 0.01 * step for name, value in params.items()}
                version = writer.set_parameters(moved, expected_version=version)
                for seed in range(4):  # every read sees the write, whichever replica answers
                    got = reader.compute_advantage(**batch(seed), min_parameter_version=version)
                    assert got.parameter_version == version
                pulled, _ = reader.get_parameters(min_parameter_version=version)
                assert pulled == version
            assert grpc_requests(one) > 0 and grpc_requests(two) > 0
            with pytest.raises(FailedPreconditionError, match="not yet at 99"):
                writer.compute_advantage(**batch(), min_parameter_version=99)
            with pytest.raises(TypeError, match="min_parameter_version must be an int"):
                reader.compute_advantage(**batch(), min_parameter_version="3")


def test_the_asyncio_client_takes_a_list_too(refusing: RefusingServer) -> None:
    async def scenario(target: list[str]) -> list[int]:
        async with AsyncAdvantageClient(target, timeout=60) as client:
            results = await asyncio.gather(
                *(client.compute_advantage(**batch(seed)) for seed in range(6))
            )
            return [r.parameter_version for r in results]

    with running_server() as real:
        assert asyncio.run(scenario([refusing.target, real.target])) == [0] * 6
