"""Unit tests of service.runtime.batching.Batcher: merging, limits, versions, failures, the lock."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from service.errors import Cancelled, DeadlineExceeded, ResourceExhausted
from service.models.manifest import BatchingSpec, InputSpec, Manifest, NetworkFile
from service.models.model import Model
from service.runtime.batching import Batcher, BatchingConfig, BatchRecord, attach_batchers
from service.runtime.call import CallState
from service.settings import Settings

# Merged passes may differ from lone passes in the last ulp (MKL picks kernels by row count);
# measured max |Δ| on this MLP is ~1e-7 for values of order 0.1–1.
VALUE_ATOL = 1e-6


def mlp_model(obs: int = 8, hidden: int = 32, **batching: object) -> Model:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(obs, hidden), nn.Tanh(), nn.Linear(hidden, 1)).eval()
    manifest = Manifest(
        name="mlp",
        inputs=(InputSpec(name="observation", shape=(obs,)),),
        value_network=NetworkFile(file="<memory>"),
        batching=BatchingSpec(**batching),
    )
    return Model(manifest=manifest, device=torch.device("cpu"), value_network=net)


def config(**overrides: object) -> BatchingConfig:
    base = {"enabled": True, "max_batch_rows": 4096, "max_queue_delay_us": 0, "max_queue_size": 64}
    return BatchingConfig(**(base | overrides))


@pytest.fixture
def records() -> list[BatchRecord]:
    return []


def started(model: Model, records: list[BatchRecord], **overrides: object) -> Batcher:
    return Batcher(model, config(**overrides), records.append).start()


def test_concurrent_requests_merge_and_match_lone_passes(records: list[BatchRecord]) -> None:
    model = mlp_model()
    batcher = started(model, records, max_queue_delay_us=50_000)
    inputs = [torch.randn(rows, 8) for rows in (1, 3, 64, 7, 200, 2, 32, 5)]
    with torch.inference_mode():
        alone = [model.value([x]) for x in inputs]
    try:
        with ThreadPoolExecutor(len(inputs)) as pool:
            results = list(pool.map(lambda x: batcher.submit([x]), inputs))
    finally:
        batcher.stop()
    worst = 0.0
    for (values, version), expected in zip(results, alone, strict=True):
        assert version == 0
        assert values.shape == expected.shape
        worst = max(worst, float((values - expected).abs().max()))
    assert worst <= VALUE_ATOL
    stats = batcher.stats()
    assert stats["requests"] == len(inputs)
    assert stats["largest_batch_requests"] > 1  # they really were merged
    assert sum(record.requests for record in records) == len(inputs)
    assert all(len(record.queue_delays_s) == record.requests for record in records)


def test_max_batch_rows_is_respected_and_big_requests_run_alone(
    records: list[BatchRecord],
) -> None:
    model = mlp_model()
    batcher = started(model, records, max_batch_rows=100, max_queue_delay_us=30_000)
    inputs = [torch.randn(rows, 8) for rows in (40, 40, 40, 40, 250)]
    try:
        with ThreadPoolExecutor(len(inputs)) as pool:
            results = list(pool.map(lambda x: batcher.submit([x]), inputs))
    finally:
        batcher.stop()
    assert [values.shape[0] for values, _ in results] == [40, 40, 40, 40, 250]
    assert all(record.rows <= 100 or record.requests == 1 for record in records)
    assert any(record.rows == 250 and record.requests == 1 for record in records)


def test_full_queue_answers_resource_exhausted(records: list[BatchRecord]) -> None:
    model = mlp_model()
    batcher = started(model, records, max_queue_size=2)
    x = [torch.randn(4, 8)]
    with ThreadPoolExecutor(4) as pool:
        with model.lock:  # an "update" in progress: the batcher thread waits for the lock
            first = pool.submit(batcher.submit, x)
            deadline = time.monotonic() + 5
            while batcher.stats()["queued"] and time.monotonic() < deadline:
                time.sleep(0.001)  # the batcher took it and now waits for the lock
            queued = [pool.submit(batcher.submit, x) for _ in range(2)]
            while batcher.stats()["queued"] < 2 and time.monotonic() < deadline:
                time.sleep(0.001)
            # This thread holds the lock, so it would evaluate directly: submit directly instead.
            with pytest.raises(ResourceExhausted, match="max_queue_size = 2"):
                batcher.submit(x)
        assert first.result(5)[0].shape == (4,)
        assert all(future.result(5)[0].shape == (4,) for future in queued)
    batcher.stop()
    assert batcher.stats()["rejected"] == 1


class VersionedNet(nn.Module):
    """V(s) = c for every row; an update sets c to the new parameter version."""

    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.0005)  # long enough for updates to interleave with passes
        return (x[:, :1] * 0 + self.c).clone()


def test_a_batch_never_mixes_parameter_versions(records: list[BatchRecord]) -> None:
    manifest = Manifest(name="v", inputs=(InputSpec(name="observation", shape=(2,)),))
    model = Model(manifest=manifest, device=torch.device("cpu"), value_network=VersionedNet())
    batcher = started(model, records, max_queue_delay_us=200)
    stop = threading.Event()

    def updates() -> None:
        while not stop.is_set():
            with model.lock, torch.no_grad():  # what ComputeLoss's update does
                model.parameter_version += 1
                time.sleep(0.0002)
                model.value_network.c.fill_(model.parameter_version)
            time.sleep(0.0003)

    updater = threading.Thread(target=updates)
    updater.start()
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(
                pool.map(lambda n: batcher.submit([torch.ones(n % 5 + 1, 2)]), range(400))
            )
    finally:
        stop.set()
        updater.join()
        batcher.stop()
    assert len({version for _, version in results}) > 3  # updates really interleaved
    for values, version in results:
        assert torch.equal(values, torch.full_like(values, float(version)))
    assert max(record.requests for record in records) > 1


class Picky(nn.Module):
    """Fails on any row whose first feature is huge (a broken request)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x[:, 0] > 1e6).any()):
            raise RuntimeError("bad row")
        return x.sum(-1, keepdim=True)


def test_a_failing_request_does_not_fail_its_batch(records: list[BatchRecord]) -> None:
    manifest = Manifest(name="p", inputs=(InputSpec(name="observation", shape=(2,)),))
    model = Model(manifest=manifest, device=torch.device("cpu"), value_network=Picky())
    batcher = started(model, records, max_queue_delay_us=30_000)
    inputs = [torch.ones(3, 2), torch.full((2, 2), 1e7), torch.ones(4, 2)]

    def call(x: torch.Tensor) -> object:
        try:
            return batcher.submit([x])[0]
        except RuntimeError as error:
            return error

    try:
        with ThreadPoolExecutor(3) as pool:
            good, bad, other = pool.map(call, inputs)
    finally:
        batcher.stop()
    assert isinstance(bad, RuntimeError)
    assert torch.equal(good, torch.full((3,), 2.0)) and torch.equal(other, torch.full((4,), 2.0))


def test_stopped_batcher_evaluates_directly(records: list[BatchRecord]) -> None:
    model = mlp_model()
    batcher = started(model, records)
    batcher.stop()
    values, version = batcher.submit([torch.randn(5, 8)])
    assert values.shape == (5,) and version == 0


def test_manifest_fields_override_server_settings() -> None:
    settings = Settings(batching=False, max_batch_rows=1000, max_queue_size=7)
    on = mlp_model(enabled=True, max_queue_delay_us=250)
    off = mlp_model()
    attached = attach_batchers([on, off], settings)
    assert [batcher.model for batcher in attached] == [on]
    assert attached[0].config == BatchingConfig(True, 1000, 250, 7)
    disabled = mlp_model(enabled=False)
    assert attach_batchers([disabled], Settings(batching=True)) == []
    with pytest.raises(ValueError, match="max_batch_rows"):
        BatchingConfig.resolve(BatchingSpec(max_batch_rows=0), Settings())


def test_cli_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.cli import build_settings

    settings = build_settings(
        ["serve", "--batching", "--max-batch-rows", "512", "--max-queue-delay-us", "300"]
    )
    assert (settings.batching, settings.max_batch_rows, settings.max_queue_delay_us) == (
        True,
        512,
        300,
    )
    assert build_settings(["serve"]).batching is False
    monkeypatch.setenv("ADVANTAGE_BATCHING", "true")
    monkeypatch.setenv("ADVANTAGE_MAX_QUEUE_SIZE", "9")
    settings = build_settings(["serve"])
    assert settings.batching is True and settings.max_queue_size == 9
    assert build_settings(["serve", "--no-batching"]).batching is False


def test_requests_whose_caller_gave_up_are_dropped_from_the_queue(
    records: list[BatchRecord],
) -> None:
    model = mlp_model()
    batcher = started(model, records, max_queue_delay_us=0)
    x = torch.randn(4, 8)
    pool = ThreadPoolExecutor(3)
    try:
        with model.lock:  # an update is in progress: the first batch waits for the lock
            blocker = pool.submit(batcher.submit, [x], CallState.with_timeout(60))
            while batcher.stats()["taken"] < 1:
                time.sleep(0.001)
            expired = CallState(deadline=time.monotonic() + 0.05)
            cancelled = CallState()
            late = pool.submit(batcher.submit, [x], expired)
            gone = pool.submit(batcher.submit, [x], cancelled)
            while batcher.stats()["queued"] < 2:
                time.sleep(0.001)
            cancelled.cancel()
            while expired.wanted:
                time.sleep(0.001)
        assert blocker.result(30)[0].shape == (4,)
        with pytest.raises(DeadlineExceeded, match="dropped from the batch queue"):
            late.result(30)
        with pytest.raises(Cancelled, match="dropped from the batch queue"):
            gone.result(30)
        assert batcher.stats()["dropped"] == 2
        assert [record.requests for record in records] == [1]  # only the blocker's pass ran
    finally:
        pool.shutdown()
        batcher.stop()


class ThreadRecorder(nn.Module):
    """V(s) = sum of the row; remembers which thread ran each pass."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads.append(threading.current_thread().name)
        return x.sum(-1, keepdim=True)


def recorder_model() -> tuple[Model, ThreadRecorder]:
    manifest = Manifest(name="r", inputs=(InputSpec(name="observation", shape=(2,)),))
    net = ThreadRecorder()
    return Model(manifest=manifest, device=torch.device("cpu"), value_network=net), net


def test_an_idle_batcher_runs_the_request_in_its_own_thread(records: list[BatchRecord]) -> None:
    model, net = recorder_model()
    batcher = started(model, records, max_queue_delay_us=0)
    try:
        for rows in (1, 3, 2):
            values, _ = batcher.submit([torch.ones(rows, 2)])
            assert torch.equal(values, torch.full((rows,), 2.0))
    finally:
        batcher.stop()
    me = threading.current_thread().name
    assert net.threads == [me, me, me]  # no hand-off to the batcher thread
    assert [record.requests for record in records] == [1, 1, 1]
    assert batcher.stats()["taken"] == 3


def test_requests_arriving_during_a_pass_are_merged_after_it(records: list[BatchRecord]) -> None:
    model, net = recorder_model()
    batcher = started(model, records, max_queue_delay_us=0)
    pool = ThreadPoolExecutor(4)
    try:
        with model.lock:  # the first request's own pass waits here, holding the batcher busy
            first = pool.submit(batcher.submit, [torch.ones(1, 2)])
            deadline = time.monotonic() + 30
            while batcher.stats()["taken"] < 1 and time.monotonic() < deadline:
                time.sleep(0.001)
            later = [pool.submit(batcher.submit, [torch.full((n, 2), float(n))]) for n in (2, 3, 4)]
            while batcher.stats()["queued"] < 3 and time.monotonic() < deadline:
                time.sleep(0.001)
        assert torch.equal(first.result(30)[0], torch.full((1,), 2.0))
        for n, future in zip((2, 3, 4), later, strict=True):
            assert torch.equal(future.result(30)[0], torch.full((n,), 2.0 * n))
    finally:
        pool.shutdown()
        batcher.stop()
    assert [record.requests for record in records] == [1, 3]  # one pass for the three waiting
    assert net.threads[0].startswith("ThreadPoolExecutor")
    assert net.threads[1] == "batcher-r"


def test_with_a_delay_every_request_goes_through_the_batcher(records: list[BatchRecord]) -> None:
    model, net = recorder_model()
    batcher = started(model, records, max_queue_delay_us=100)
    try:
        batcher.submit([torch.ones(2, 2)])
    finally:
        batcher.stop()
    assert net.threads == ["batcher-r"]


def test_a_claim_runs_the_claiming_threads_next_submit_at_once(records: list[BatchRecord]) -> None:
    model, net = recorder_model()
    batcher = started(model, records, max_queue_delay_us=0)
    try:
        assert batcher.try_claim()
        assert not batcher.try_claim()  # claimed: busy until used or released
        values, _ = batcher.submit([torch.ones(2, 2)])
        batcher.release_claim()  # used by the submit: nothing left to give back
        assert torch.equal(values, torch.full((2,), 2.0))
        assert net.threads == [threading.current_thread().name]
        assert batcher.try_claim()  # idle again
        batcher.release_claim()  # unused: given back
        assert batcher.try_claim()
        batcher.release_claim()
    finally:
        batcher.stop()
    # A claimed pass merges nothing: counted alone, not reported as a batch.
    assert records == [] and (batcher.stats()["alone"], batcher.stats()["taken"]) == (1, 1)


def test_requests_queued_behind_an_unused_claim_run_when_it_is_released(
    records: list[BatchRecord],
) -> None:
    model, net = recorder_model()
    batcher = started(model, records, max_queue_delay_us=0)
    pool = ThreadPoolExecutor(2)
    try:
        assert batcher.try_claim()
        futures = [pool.submit(batcher.submit, [torch.ones(n, 2)]) for n in (1, 2)]
        deadline = time.monotonic() + 30
        while batcher.stats()["queued"] < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert not any(future.done() for future in futures)  # they wait behind the claim
        batcher.release_claim()
        assert [future.result(30)[0].shape[0] for future in futures] == [1, 2]
    finally:
        pool.shutdown()
        batcher.stop()
    assert [record.requests for record in records] == [2]  # merged into one pass
    assert net.threads == ["batcher-r"]


def test_a_busy_or_delayed_batcher_cannot_be_claimed(records: list[BatchRecord]) -> None:
    model, _ = recorder_model()
    delayed = started(model, records, max_queue_delay_us=100)
    try:
        assert not delayed.try_claim()
    finally:
        delayed.stop()
    stopped = Batcher(model, config(), records.append)  # never started
    assert not stopped.try_claim()
