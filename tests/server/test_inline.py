"""Small ComputeAdvantage requests run on the event loop when that can never block it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from torch import nn

from service.api import inline
from service.models.demo import demo_model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.settings import Settings
from tests.support.servers import running_server
from tests.support.wire import array, full_trajectory, random_batch, stub


class _ThreadNames(nn.Module):
    """The wrapped value network, remembering which thread ran each pass; `before(thread name)`
    runs first on each pass (a stall, some computing)."""

    def __init__(self, inner: nn.Module, before: Callable[[str], None] | None = None) -> None:
        super().__init__()
        self.inner = inner
        self.before = before
        self.threads: list[str] = []

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        name = threading.current_thread().name
        self.threads.append(name)
        if self.before is not None:
            self.before(name)
        return self.inner(observation)


def _sleep_50_ms(thread: str) -> None:
    time.sleep(0.05)


def _stall_off_the_loop(thread: str) -> None:
    """50 ms of waiting (not computing) on a worker, none on the event loop: as on a busy
    server, where a pass on a worker waits for the GIL and the cores."""
    if thread.startswith(("compute", "batcher")):
        time.sleep(0.05)


def _compute_20_ms(thread: str) -> None:
    """20 ms of the thread's own CPU time."""
    start = time.thread_time()
    while time.thread_time() - start < 0.02:
        pass


@pytest.fixture(autouse=True)
def quick_enough(monkeypatch):
    """The tests below are about where a request runs, not about this machine's speed: any
    measured duration below a minute counts as quick (the slow-model test sets its own)."""
    monkeypatch.setattr(inline, "INLINE_MAX_S", 60.0)


def _model():
    model = demo_model(torch.device("cpu"))
    recorder = _ThreadNames(model.value_network)
    model.value_network = recorder
    return model, recorder


def _request(batch: int = 2, steps: int = 32, seed: int = 0) -> pb.ComputeAdvantageRequest:
    return pb.ComputeAdvantageRequest(
        trajectory=full_trajectory(random_batch((batch,), steps, seed))
    )


def _answer(settings: Settings, request: pb.ComputeAdvantageRequest):
    """The answer to `request` sent twice, and the threads that ran the second one's passes."""
    model, recorder = _model()
    with running_server(settings, {"demo": model}) as server:
        first = stub(server.target).ComputeAdvantage(request, timeout=60)
        recorder.threads.clear()  # the warm-up's and the first request's passes
        reply = stub(server.target).ComputeAdvantage(request, timeout=60)
    for field in ("advantage", "value_target"):
        assert torch.equal(array(getattr(first, field)), array(getattr(reply, field)))
    return reply, recorder.threads


def test_small_request_runs_inline_with_the_pools_numbers() -> None:
    request = _request()
    inline, inline_threads = _answer(Settings(rest_port=0), request)
    pooled, pooled_threads = _answer(Settings(rest_port=0, inline_max_kb=0), request)
    assert inline_threads and not any(name.startswith("compute") for name in inline_threads)
    assert pooled_threads and all(name.startswith("compute") for name in pooled_threads)
    for field in ("advantage", "value_target", "state_value", "next_state_value"):
        assert torch.equal(array(getattr(inline, field)), array(getattr(pooled, field))), field


def test_large_request_goes_to_the_pool() -> None:
    request = _request(batch=64, steps=128, seed=1)
    assert request.ByteSize() > 64 * 1024
    _, threads = _answer(Settings(rest_port=0), request)
    assert threads and all(name.startswith("compute") for name in threads)


def test_a_held_model_lock_sends_small_requests_to_the_pool() -> None:
    # An update in progress holds the model's lock: the request must wait for it on a worker
    # thread, never on the event loop (health keeps answering meanwhile).
    model, recorder = _model()
    with running_server(Settings(rest_port=0), {"demo": model}) as server:
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(server.target))
        stub(server.target).ComputeAdvantage(_request(), timeout=60)  # measured: quick
        result: list[object] = []
        with model.lock:
            recorder.threads.clear()
            worker = threading.Thread(
                target=lambda: result.append(
                    stub(server.target).ComputeAdvantage(_request(), timeout=60)
                )
            )
            worker.start()
            for _ in range(3):
                reply = health.Check(health_pb2.HealthCheckRequest(), timeout=30)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert worker.is_alive() and not result  # waiting for the lock, on the pool
        worker.join(60)
    assert isinstance(result[0], pb.ComputeAdvantageResponse)
    assert recorder.threads and all(name.startswith("compute") for name in recorder.threads)


def test_with_batching_an_idle_batcher_is_claimed_and_the_request_runs_inline() -> None:
    request = _request(seed=3)
    batched, threads = _answer(Settings(rest_port=0, batching=True), request)
    assert threads and not any(n.startswith(("compute", "batcher")) for n in threads)
    pooled, _ = _answer(Settings(rest_port=0, inline_max_kb=0), request)
    for field in ("advantage", "value_target", "state_value", "next_state_value"):
        assert torch.equal(array(getattr(batched, field)), array(getattr(pooled, field))), field


def test_a_slow_model_never_holds_the_event_loop(monkeypatch) -> None:
    monkeypatch.setattr(inline, "INLINE_MAX_S", 0.005)
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 3600.0)  # no retry within this test
    model = demo_model(torch.device("cpu"))
    slow = _ThreadNames(model.value_network, _sleep_50_ms)
    model.value_network = slow
    with running_server(Settings(rest_port=0), {"demo": model}) as server:
        slow.threads.clear()
        for _ in range(3):  # small in bytes, but each took longer than INLINE_MAX_S
            stub(server.target).ComputeAdvantage(_request(), timeout=60)
    assert len(slow.threads) == 3 and all(name.startswith("compute") for name in slow.threads)


@pytest.mark.parametrize("batching", [False, True])
def test_a_model_slow_on_the_pool_but_not_by_its_work_is_tried_inline_again(
    monkeypatch, batching
) -> None:
    # Measured on the pool, every request exceeds INLINE_MAX_S by its waits alone; without the
    # retry the model would stay on the pool for good. (20 ms: far below the 50 ms stall, far
    # above a pass of the demo model on a loaded machine.)
    monkeypatch.setattr(inline, "INLINE_MAX_S", 0.02)
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 0.0)
    model = demo_model(torch.device("cpu"))
    stalled = _ThreadNames(model.value_network, _stall_off_the_loop)
    model.value_network = stalled
    with running_server(Settings(rest_port=0, batching=batching), {"demo": model}) as server:
        assert not server.server.servicer.inline.last["demo"].quick  # measured on a worker
        stalled.threads.clear()  # the warm-up's and the start-up measurement's passes
        for _ in range(6):
            stub(server.target).ComputeAdvantage(_request(), timeout=60)
    on_pool = [name.startswith(("compute", "batcher")) for name in stalled.threads]
    # The first goes to the pool (its work there may take a new thread's set-up, more than
    # INLINE_MAX_S of CPU time, so it can take one more); a retry inline is quick, and the
    # model stays inline.
    assert len(on_pool) == 6 and on_pool[0] and not any(on_pool[3:]), stalled.threads


def test_a_model_slow_by_its_own_work_is_never_tried_inline(monkeypatch) -> None:
    monkeypatch.setattr(inline, "INLINE_MAX_S", 0.005)
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 0.0)  # a retry whenever one is allowed
    model = demo_model(torch.device("cpu"))
    busy = _ThreadNames(model.value_network, _compute_20_ms)
    model.value_network = busy
    with running_server(Settings(rest_port=0), {"demo": model}) as server:
        busy.threads.clear()
        for _ in range(3):
            stub(server.target).ComputeAdvantage(_request(), timeout=60)
    assert len(busy.threads) == 3 and all(name.startswith("compute") for name in busy.threads)


@pytest.mark.parametrize("batching", [False, True])
def test_the_first_small_request_runs_inline(batching) -> None:
    # The server measured the model's largest small request while it started, so the first
    # request need not go to the pool to be measured (where, with many callers at once, waits
    # for the GIL kept every measurement over INLINE_MAX_S).
    model, recorder = _model()
    with running_server(Settings(rest_port=0, batching=batching), {"demo": model}) as server:
        measured = server.server.servicer.inline.last
        assert set(measured) == {"demo"} and 0 < measured["demo"].wall_s < 60
        recorder.threads.clear()  # the warm-up's and the measurement's passes
        stub(server.target).ComputeAdvantage(_request(), timeout=60)
        stats = server.server.batchers[0].stats() if batching else None
    assert recorder.threads and not any(name.startswith("compute") for name in recorder.threads)
    if batching:  # the start-up measurement is not counted; the request ran alone, unmerged
        assert stats is not None and (stats["alone"], stats["batches"]) == (1, 0)


def test_the_largest_small_request_fits_and_carries_the_most_rows() -> None:
    from service.wire.advantage import largest_small_request

    model = demo_model(torch.device("cpu"))
    limit = 64 * 1024
    request = largest_small_request(model, limit)
    assert request is not None and request.ByteSize() <= limit
    shape = tuple(request.trajectory.observation["observation"].shape)
    assert request.trajectory.form == pb.TRAJECTORY_FORM_COMPACT and shape[0] == 1
    # Most of the budget is observation rows (each step: a row of 4 float32, a reward, 2 flags).
    assert shape[1] * 4 * shape[2] > 0.6 * limit
    assert largest_small_request(model, 1024) is None  # not even two steps


class _RefusesZeros(nn.Module):
    """A value network that fails on an all-zero batch (as the start-up measurement sends)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        if observation.shape[0] > 2 and not bool(observation.any()):
            raise RuntimeError("zeros")
        return self.inner(observation)


def test_a_model_failing_the_start_up_measurement_is_still_served() -> None:
    model = demo_model(torch.device("cpu"))
    model.value_network = _RefusesZeros(model.value_network)
    with running_server(Settings(rest_port=0), {"demo": model}) as server:
        assert "demo" not in server.server.servicer.inline.last  # measured when served
        reply = stub(server.target).ComputeAdvantage(_request(), timeout=60)
    assert tuple(reply.advantage.shape) == (2, 32)


def _served(server, ran_on: str) -> float:
    """`advantage_small_requests_total` for the demo model, as a scrape reads it."""
    registry = server.server.metrics.registry
    value = registry.get_sample_value(
        "advantage_small_requests_total", {"model": "demo", "ran_on": ran_on}
    )
    return 0.0 if value is None else value


def test_small_requests_are_counted_by_where_they_ran() -> None:
    model, _ = _model()
    with running_server(Settings(rest_port=0), {"demo": model}) as server:
        assert (_served(server, "event_loop"), _served(server, "pool")) == (0, 0)  # start-up
        for _ in range(3):
            stub(server.target).ComputeAdvantage(_request(), timeout=60)
        large = _request(batch=64, steps=128, seed=1)  # not a small request: not counted
        stub(server.target).ComputeAdvantage(large, timeout=60)
        assert (_served(server, "event_loop"), _served(server, "pool")) == (3, 0)


def test_small_requests_sent_to_the_pool_are_counted_there(monkeypatch) -> None:
    monkeypatch.setattr(inline, "INLINE_MAX_S", 1e-9)  # every run is slow
    monkeypatch.setattr(inline, "INLINE_RETRY_S", 3600.0)
    model, _ = _model()
    with running_server(Settings(rest_port=0), {"demo": model}) as server:
        for _ in range(2):
            stub(server.target).ComputeAdvantage(_request(), timeout=60)
        assert (_served(server, "event_loop"), _served(server, "pool")) == (0, 2)
