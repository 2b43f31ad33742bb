"""Batching through a real server: same numbers as alone, RESOURCE_EXHAUSTED, a free event loop."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from torch import nn

from service.models.manifest import InputSpec, Manifest, NetworkFile
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.support.servers import running_server
from tests.support.wire import (
    array,
    compact_trajectory,
    full_trajectory,
    random_batch,
    stub,
    tensor,
)

# Merged passes may differ from lone passes in the last ulp of a value (MKL picks kernels by row
# count); GAE sums ~1/(1 - γλ) ≈ 17 such terms. Measured worst |Δ| here: see the notes.
ATOL = 2e-6
SHAPES = [((1,), 32), ((4,), 32), ((2, 3), 16), ((3,), 50), ((1,), 7), ((8,), 64)]


def requests() -> list[pb.ComputeAdvantageRequest]:
    out = []
    for index, (batch, steps) in enumerate(SHAPES * 2):
        data = random_batch(batch, steps, seed=index)
        form = compact_trajectory if index % 2 else full_trajectory
        out.append(pb.ComputeAdvantageRequest(trajectory=form(data)))
    return out


def test_concurrent_batched_requests_match_lone_unbatched_requests() -> None:
    batched = Settings(batching=True, max_queue_delay_us=20_000, rest_port=0)
    with running_server(Settings(batching=False, rest_port=0)) as plain:
        client = stub(plain.target)
        alone = [client.ComputeAdvantage(request, timeout=60) for request in requests()]
    with running_server(batched) as server:
        client = stub(server.target)
        with ThreadPoolExecutor(len(SHAPES) * 2) as pool:
            together = list(pool.map(lambda r: client.ComputeAdvantage(r, timeout=60), requests()))
        stats = server.server.batchers[0].stats()
        exposition = server.server.metrics.exposition().decode()
    merged_requests = 'advantage_batch_requests_count{model="demo"} '
    assert merged_requests in exposition  # the batches reached the metrics
    assert 'advantage_batch_queue_delay_seconds_count{model="demo"} 12.0' in exposition
    assert stats["largest_batch_requests"] > 1, stats  # the requests really were merged
    worst = 0.0
    for one, merged in zip(alone, together, strict=True):
        assert merged.parameter_version == one.parameter_version
        for name in ("advantage", "value_target", "state_value", "next_state_value"):
            a, b = array(getattr(one, name)), array(getattr(merged, name))
            assert a.shape == b.shape
            worst = max(worst, float((a - b).abs().max()))
    assert worst <= ATOL, worst


def big_model(hidden: int = 512) -> Model:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)
    ).eval()
    manifest = Manifest(
        name="big",
        inputs=(InputSpec(name="observation", shape=(64,)),),
        value_network=NetworkFile(file="<memory>"),
    )
    return Model(manifest=manifest, device=torch.device("cpu"), value_network=net)


def big_request(batch: int, steps: int) -> pb.ComputeAdvantageRequest:
    g = torch.Generator().manual_seed(1)
    trajectory = pb.Trajectory(
        reward=tensor(torch.randn(batch, steps, generator=g)),
        done=tensor(torch.zeros(batch, steps, dtype=torch.bool)),
        form=pb.TRAJECTORY_FORM_COMPACT,
    )
    trajectory.observation["observation"].CopyFrom(
        tensor(torch.randn(batch, steps + 1, 64, generator=g))
    )
    trajectory.next_observation["observation"].CopyFrom(tensor(torch.zeros(0, 64)))
    return pb.ComputeAdvantageRequest(model_name="big", trajectory=trajectory)


class _GatedValue(nn.Module):
    """A value network that holds its forward pass until the test opens the gate."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.entered = threading.Event()
        self.gate = threading.Event()

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.inner(observation)


@pytest.mark.parametrize("batching", [True, False])
def test_health_answers_while_a_big_request_computes(batching: bool) -> None:
    # The property, without a wall-clock bound a loaded machine could break: health answers
    # SERVING while the big request is provably inside its forward pass.
    model = big_model()
    gated = _GatedValue(model.value_network)
    model.value_network = gated
    gated.gate.set()  # let the warm-up through
    settings = Settings(batching=batching, rest_port=0)
    with running_server(settings, {"big": model}) as server:
        gated.gate.clear()
        gated.entered.clear()
        request = big_request(64, 1024)  # 65 600 rows through a 64-512-512-1 MLP
        client = stub(server.target)
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.target))
        result: list[object] = []
        worker = threading.Thread(
            target=lambda: result.append(client.ComputeAdvantage(request, timeout=120))
        )
        worker.start()
        assert gated.entered.wait(60)
        for _ in range(5):
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=30)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert worker.is_alive() and not result  # still computing: the pass is held
        gated.gate.set()
        worker.join(120)
    assert isinstance(result[0], pb.ComputeAdvantageResponse)


def test_full_queue_answers_resource_exhausted_over_grpc() -> None:
    model = big_model(hidden=16)
    settings = Settings(batching=True, max_queue_size=1, rest_port=0)
    with running_server(settings, {"big": model}) as server:
        batcher = server.server.batchers[0]
        client = stub(server.target)
        request = big_request(1, 8)
        with ThreadPoolExecutor(2) as pool:
            with model.lock:  # a parameter update in progress
                first = pool.submit(client.ComputeAdvantage, request, timeout=30)
                # Wait until the batcher took `first` into a batch (it then waits for the lock).
                _wait_for(lambda: batcher.stats()["taken"] == 1)
                second = pool.submit(client.ComputeAdvantage, request, timeout=30)
                _wait_for(lambda: batcher.stats()["queued"] == 1)
                with pytest.raises(grpc.RpcError) as raised:
                    client.ComputeAdvantage(request, timeout=30)
            assert first.result(30).model_name == "big"
            assert second.result(30).model_name == "big"
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_queue_size = 1" in raised.value.details()


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)
