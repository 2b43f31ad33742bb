"""Prometheus metrics of one server, recorded by both transports (gRPC and REST).

Each `AdvantageServer` owns a `Metrics` with its own `CollectorRegistry`, so several servers in
one process (tests) never share or collide on counters. Names follow Triton's `nv_inference_*`
style with an `advantage_` prefix; the table is in the README.

Recording goes through one context manager, used by the servicer's `_run` and the REST routes:

    with metrics.track("grpc", request=request) as call:
        return call.done(await run(...))

It counts the request by transport, RPC, estimator and status code, times it, keeps the in-flight
gauge, and, for a response carrying `timing`, observes the server's phase times and step count.
Recording takes no lock (a deque append and a set add/discard): the prometheus objects, each of
whose updates takes a lock, are brought up to date when they are read (`exposition`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
from google.protobuf.message import Message
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from service.errors import ServiceError
from service.estimators.registry import DEFAULT_ESTIMATOR
from service.losses.registry import DEFAULT_LOSS
from service.models.model import Model
from service.runtime.replica import ReplicaState

Reply = TypeVar("Reply")

__all__ = ["CONTENT_TYPE_LATEST", "Call", "Metrics", "estimator_label", "rpc_label"]

# Seconds: 0.1 ms … ~26 s, ×2 per bucket (phases of a small request are well under a millisecond).
TIME_BUCKETS = tuple(1e-4 * 2**i for i in range(19))
# Time steps (B·T) per request: 1 … 4^12 ≈ 16.8 M.
STEP_BUCKETS = tuple(float(4**i) for i in range(13))
# Timing field of a response → the histogram that observes it.
PHASES = ("decode", "network", "estimator", "encode")
# Finished calls queued for the metrics before the recording call folds them itself (when no
# scrape comes): bounds the queue's memory to a few MB.
FOLD_EVERY = 4096
# Label value when a request has no estimator/loss (ListModels, GetModel) or it is not known yet.
NO_ESTIMATOR = "none"


# Request messages not named "<Rpc>Request" (client-streaming SetParameters passes a chunk).
_RPC_OF_MESSAGE = {"ParameterChunk": "SetParameters"}


def rpc_label(request: Message | None) -> str:
    """ "ComputeAdvantage" for a ComputeAdvantageRequest, and so on ("unknown" without one)."""
    if request is None:
        return "unknown"
    name = type(request).__name__
    return _RPC_OF_MESSAGE.get(name, name.removesuffix("Request"))


def estimator_label(request: Message | None) -> str:
    """The estimator (or loss) a request selects: the set member of its `estimator`/`loss` oneof.

    ComputeLoss requests are labelled by their loss (unset = ppo_clip), ComputeAdvantage
    requests by their estimator (unset = gae); requests without such a oneof
    (ListModels, GetModel) get "none".
    """
    if request is None:
        return NO_ESTIMATOR
    oneofs = request.DESCRIPTOR.oneofs_by_name
    for name, default in (("loss", DEFAULT_LOSS), ("estimator", DEFAULT_ESTIMATOR)):
        if name in oneofs:
            return request.WhichOneof(name) or default
    return NO_ESTIMATOR


class _Folding(Collector):
    """Brings the metrics up to date (`Metrics.fold`) when the registry is collected; exposes
    nothing itself."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[GaugeMetricFamily]:
        self._metrics.fold()
        return []


class _DeviceMemoryCollector(Collector):
    """GPU memory held by torch's caching allocator, per CUDA device (nothing without CUDA)."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if not torch.cuda.is_available():
            return []
        allocated = GaugeMetricFamily(
            "advantage_gpu_memory_allocated_bytes",
            "GPU memory occupied by tensors (torch.cuda.memory_allocated), per device.",
            labels=["device"],
        )
        reserved = GaugeMetricFamily(
            "advantage_gpu_memory_reserved_bytes",
            "GPU memory held by torch's caching allocator (torch.cuda.memory_reserved).",
            labels=["device"],
        )
        for index in range(torch.cuda.device_count()):
            device = f"cuda:{index}"
            allocated.add_metric([device], torch.cuda.memory_allocated(index))
            reserved.add_metric([device], torch.cuda.memory_reserved(index))
        return [allocated, reserved]


class _ReplicaCollector(Collector):
    """A replica's lag behind its learner, read from its `ReplicaState` at each scrape."""

    def __init__(self, replica: ReplicaState, models: Iterable[Model]) -> None:
        self.replica = replica
        self.models = list(models)

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        replica = self.replica
        connected = GaugeMetricFamily(
            "advantage_replica_connected",
            "1 while this replica is subscribed to its learner (WatchModels), else 0.",
            labels=["learner"],
        )
        connected.add_metric([replica.learner], 1.0 if replica.connected else 0.0)
        behind = GaugeMetricFamily(
            "advantage_replica_versions_behind",
            "Versions of the model the learner announced that this replica does not serve yet.",
            labels=["model"],
        )
        since = GaugeMetricFamily(
            "advantage_replica_seconds_since_sync",
            "Seconds since this replica last held the learner's latest version of the model "
            "(0 while subscribed and up to date; grows while a copy is pending or the learner "
            "is away).",
            labels=["model"],
        )
        syncs = CounterMetricFamily(
            "advantage_replica_syncs",
            "Copies of the learner's parameters installed, by model.",
            labels=["model"],
        )
        for model in self.models:
            behind.add_metric(
                [model.name], replica.versions_behind(model.name, model.parameter_version)
            )
            since.add_metric([model.name], replica.seconds_since_sync(model.name))
            syncs.add_metric([model.name], replica.models[model.name].syncs)
        return [connected, behind, since, syncs]


class _SmallRequestCollector(Collector):
    """Small ComputeAdvantage requests by where they ran (`service.api.inline`), read at each
    scrape."""

    def __init__(self, counts: Callable[[], dict[tuple[str, str], int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[CounterMetricFamily]:
        served = CounterMetricFamily(
            "advantage_small_requests",
            "Small ComputeAdvantage requests (up to --inline-max-kb) by model and where they "
            "ran: event_loop (inline, no thread hop) or pool (a compute thread).",
            labels=["model", "ran_on"],
        )
        for (model, ran_on), count in sorted(self._counts().items()):
            served.add_metric([model, ran_on], count)
        return [served]


class Call:
    """One request being tracked; see `Metrics.track`."""

    def __init__(self, metrics: Metrics, transport: str, rpc: str, estimator: str) -> None:
        self._metrics = metrics
        self.transport = transport
        self.rpc = rpc
        self.estimator = estimator
        self.code: str | None = None
        self.response: Message | None = None
        self.started = time.perf_counter()

    def done(self, response: Reply) -> Reply:
        """Mark the call successful with `response` (whose `timing` is observed); return it."""
        self.code = "OK"
        self.response = response  # type: ignore[assignment]
        return response


class Metrics:
    """The metrics of one server, in their own `CollectorRegistry`."""

    def __init__(self, models: Iterable[Model] = (), replica: ReplicaState | None = None) -> None:
        """Metrics of `models`; with `replica` (a replica's state), also its lag."""
        models = list(models)
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple[Any, ...], Any] = {}  # see `_child`
        # Recording takes no lock: a finished call is appended to `_finished` (a deque's append
        # is atomic) and its calls in flight are a set per transport; `fold` adds the queue to
        # the prometheus objects (whose updates take their locks) when they are read.
        self._finished: deque[tuple[Any, ...]] = deque()
        self._in_flight: dict[str, set[Call]] = {}
        registry = self.registry
        # Registered first, so a collection of the registry folds before reading the metrics.
        registry.register(_Folding(self))
        self.requests = Counter(
            "advantage_requests",
            "Requests finished, by transport (grpc/rest), RPC, estimator or loss, and status code.",
            ["transport", "rpc", "estimator", "code"],
            registry=registry,
        )
        self.request_duration = Histogram(
            "advantage_request_duration_seconds",
            "Server-side latency of a request, from dispatch to reply (errors included).",
            ["transport", "rpc"],
            buckets=TIME_BUCKETS,
            registry=registry,
        )
        self.phase_duration = {
            phase: Histogram(
                f"advantage_{phase}_duration_seconds",
                f"Time spent in the {phase} phase of successful requests (response timing).",
                ["rpc", "estimator"],
                buckets=TIME_BUCKETS,
                registry=registry,
            )
            for phase in PHASES
        }
        self.request_steps = Histogram(
            "advantage_request_steps",
            "Time steps (product of the reward's [*B, T] shape) per successful request.",
            ["rpc", "estimator"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "advantage_requests_in_flight",
            "Requests being processed now, by transport.",
            ["transport"],
            registry=registry,
        )
        self.parameter_version = Gauge(
            "advantage_model_parameter_version",
            "Parameter version of each model's networks (increases by one per update).",
            ["model"],
            registry=registry,
        )
        for model in models:
            self.parameter_version.labels(model=model.name).set_function(
                lambda model=model: model.parameter_version
            )
        # Dynamic batching (service.runtime.batching): one observation per merged forward pass.
        self.batch_rows = Histogram(
            "advantage_batch_rows",
            "Network rows per merged forward pass of the dynamic batcher, by model.",
            ["model"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.batch_requests = Histogram(
            "advantage_batch_requests",
            "Requests merged into one forward pass of the dynamic batcher, by model.",
            ["model"],
            buckets=tuple(float(2**i) for i in range(11)),
            registry=registry,
        )
        self.batch_queue_delay = Histogram(
            "advantage_batch_queue_delay_seconds",
            "Time a request waited in the batch queue before its pass started, by model.",
            ["model"],
            buckets=TIME_BUCKETS,
            registry=registry,
        )
        ProcessCollector(registry=registry)  # process_resident_memory_bytes, process_cpu_...
        registry.register(_DeviceMemoryCollector())
        if replica is not None:
            registry.register(_ReplicaCollector(replica, models))

    def observe_batch(self, record: Any) -> None:
        """Record one `service.runtime.batching.BatchRecord` (the batcher's `on_batch` callback)."""
        self._child(self.batch_rows, record.model).observe(record.rows)
        self._child(self.batch_requests, record.model).observe(record.requests)
        delay = self._child(self.batch_queue_delay, record.model)
        for seconds in record.queue_delays_s:
            delay.observe(seconds)

    def watch_small_requests(self, counts: Callable[[], dict[tuple[str, str], int]]) -> None:
        """Expose `counts()` (small requests by model and where they ran: the servicer's
        `InlinePolicy.counts`) as `advantage_small_requests_total`."""
        self.registry.register(_SmallRequestCollector(counts))

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (content type `CONTENT_TYPE_LATEST`)."""
        self.fold()
        return generate_latest(self.registry)

    @contextmanager
    def track(
        self,
        transport: str,
        rpc: str | None = None,
        request: Message | None = None,
        estimator: str | None = None,
    ) -> Iterator[Call]:
        """Count, time and observe one request; see the module docstring.

        The status code is the one set on the `Call` (`done` → OK, `fail`), else taken from the
        exception leaving the block: a `ServiceError`'s code, CANCELLED for a cancellation,
        INTERNAL for anything else.
        """
        call = Call(
            self,
            transport,
            rpc or rpc_label(request),
            estimator or estimator_label(request),
        )
        active = self._in_flight.get(transport) or self._count_in_flight(transport)
        active.add(call)
        error: BaseException | None = None
        try:
            yield call
        except BaseException as raised:
            error = raised
            raise
        finally:
            active.discard(call)
            self._finish(call, error)

    def _count_in_flight(self, transport: str) -> set[Call]:
        """The set of `transport`'s calls in flight, read by its gauge (once per transport)."""
        active = self._in_flight.setdefault(transport, set())
        self._child(self.in_flight, transport).set_function(lambda: len(active))
        return active

    def _finish(self, call: Call, error: BaseException | None) -> None:
        """Queue the finished call for `_fold`: no metric is touched (and no lock taken) here."""
        code = call.code
        if code is None or (error is not None and code == "OK"):
            if error is None:
                code = "OK"
            elif isinstance(error, ServiceError):
                code = error.code.name
            else:
                code = "CANCELLED" if _is_cancellation(error) else "INTERNAL"
        elapsed = time.perf_counter() - call.started
        phases, steps = _response_figures(call.response) if code == "OK" else (None, None)
        self._finished.append(
            (call.transport, call.rpc, call.estimator, code, elapsed, phases, steps)
        )
        if len(self._finished) > FOLD_EVERY:  # nobody scrapes: keep the queue bounded
            self.fold()

    def fold(self) -> None:
        """Add the queued calls to the prometheus objects. Every read of the registry does it
        first (`exposition`, or a collection of `registry`); call it before reading one of the
        metric objects directly. `deque.popleft` is atomic: two folds at once take different
        calls."""
        while True:
            try:
                transport, rpc, estimator, code, elapsed, phases, steps = self._finished.popleft()
            except IndexError:
                return
            self._child(self.requests, transport, rpc, estimator, code).inc()
            self._child(self.request_duration, transport, rpc).observe(elapsed)
            if phases is not None:
                for histogram, seconds in zip(self.phase_duration.values(), phases, strict=True):
                    self._child(histogram, rpc, estimator).observe(seconds)
            if steps is not None:
                self._child(self.request_steps, rpc, estimator).observe(steps)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once per label set: `labels()` takes the
        metric's lock and builds a key on every call, about 5 µs each, eight times per request.
        A plain dict read needs no lock (a racing first insert stores the same child twice)."""
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child


def _response_figures(response: Any) -> tuple[tuple[float, ...] | None, int | None]:
    """A successful response's phase times (seconds, in PHASES order) and step count, when it
    carries them."""
    if response is None or not hasattr(response, "DESCRIPTOR"):  # e.g. GetParameters' chunks
        return None, None
    fields = response.DESCRIPTOR.fields_by_name
    phases = None
    if "timing" in fields and response.HasField("timing"):
        timing = response.timing
        phases = tuple(getattr(timing, f"{phase}_ms") / 1e3 for phase in PHASES)
    steps = None
    if "advantage" in fields and response.HasField("advantage"):
        steps = math.prod(response.advantage.shape)
    return phases, steps


def _is_cancellation(error: BaseException) -> bool:
    return isinstance(error, asyncio.CancelledError)
