"""Dynamic batching of value-network evaluations across concurrent requests (per model).

Design:

- Request threads (the server's compute pool) call `Batcher.submit(rows)` with one request's
  network inputs, already flattened to rows [N, *shape]. They must *not* hold `Model.lock` while
  they wait (`service.runtime.advantage` never does); `submit` blocks the calling worker thread
  (never the event loop) until the request's values are ready, then returns
  `(values [N], parameter_version)`.
- One batcher thread per model takes queued requests in arrival order, up to `max_batch_rows`
  rows (a request larger than that runs alone; it is never split or padded), waiting at most
  `max_queue_delay_us` after the oldest request arrived for more to come. It concatenates the
  rows, takes `Model.lock` around the one merged forward pass, reads `parameter_version` under
  the same lock, and hands each request its slice of the output and that version. A batch
  therefore never mixes parameter versions, and parameter updates (which take the same lock)
  wait for the pass in progress, not for the queue.
- Batching never makes a request wait for nothing: with ``max_queue_delay_us = 0`` (the
  default), a request that finds no pass running and nobody queued runs its own pass at once,
  in its own thread (no hand-off to the batcher thread, no wake-up). Requests queue only while a
  pass is running, when they would wait for the model anyway; the batcher thread then merges
  them into one pass, which is where merging saves work (one pass instead of several, for
  requests that were waiting). With a delay > 0 every request goes through the queue and the
  batcher waits up to the delay for more, as asked.
- The server's event loop runs a small request itself when the batcher is idle (`try_claim`):
  that pass is the request's own, run exactly as without batching and not reported as a batch
  (`stats()["alone"]` counts them), so on an idle server batching costs only the claim.
- The queue is bounded: a request arriving when `max_queue_size` requests are already waiting is
  refused with RESOURCE_EXHAUSTED (`service.errors.ResourceExhausted`).
- The model knows nothing of its batcher: `service.runtime.Runtime` keeps one per batching model.
- Requests of different [B, T] shapes merge by rows: the networks are row-wise maps, so a row's
  value does not depend on the other rows (up to BLAS choosing different kernels for different
  row counts: last-ulp differences; 1.2e-7 at most measured on the benchmark MLP).

Statistics: counters on the batcher (`stats()`), and an optional `on_batch(BatchRecord)` callback
that the metrics use for histograms of batch rows, requests per batch and queue delays.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from service.errors import ResourceExhausted, ServiceError
from service.models.model import Model
from service.runtime.call import CallState

if TYPE_CHECKING:
    from service.models.manifest import BatchingSpec
    from service.settings import Settings


@dataclass(frozen=True)
class BatchingConfig:
    """Effective batching knobs of one model (manifest fields, else the server's settings)."""

    enabled: bool
    max_batch_rows: int
    max_queue_delay_us: int
    max_queue_size: int

    @classmethod
    def resolve(cls, spec: BatchingSpec | None, settings: Settings) -> BatchingConfig:
        """Each manifest field that is set wins over the server setting."""

        def pick(name: str) -> object:
            value = getattr(spec, name, None) if spec is not None else None
            return (
                getattr(settings, "batching" if name == "enabled" else name)
                if value is None
                else value
            )

        config = cls(
            enabled=bool(pick("enabled")),
            max_batch_rows=int(pick("max_batch_rows")),  # type: ignore[arg-type]
            max_queue_delay_us=int(pick("max_queue_delay_us")),  # type: ignore[arg-type]
            max_queue_size=int(pick("max_queue_size")),  # type: ignore[arg-type]
        )
        if config.max_batch_rows < 1 or config.max_queue_size < 1 or config.max_queue_delay_us < 0:
            raise ValueError(
                f"batching: max_batch_rows and max_queue_size must be ≥ 1 and max_queue_delay_us "
                f"≥ 0, got {config}"
            )
        return config


@dataclass(frozen=True)
class BatchRecord:
    """One merged forward pass, as reported to `on_batch`."""

    model: str
    rows: int
    requests: int
    queue_delays_s: tuple[float, ...]  # per request: enqueue → start of its batch's pass
    forward_s: float  # the forward pass, lock wait excluded
    parameter_version: int


class _Pending:
    """One request waiting in the queue."""

    __slots__ = ("call", "done", "error", "inputs", "queued_at", "rows", "values", "version")

    def __init__(self, inputs: Sequence[torch.Tensor], rows: int, call: CallState | None) -> None:
        self.call = call
        self.inputs = inputs
        self.rows = rows
        self.queued_at = time.perf_counter()
        self.done = threading.Event()
        self.values: torch.Tensor | None = None
        self.version = -1
        self.error: BaseException | None = None


class Batcher:
    """Merges concurrent `submit` calls for one model into single forward passes."""

    def __init__(
        self,
        model: Model,
        config: BatchingConfig,
        on_batch: Callable[[BatchRecord], None] | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.on_batch = on_batch
        self._delay_s = config.max_queue_delay_us / 1e6
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._cond = threading.Condition(threading.Lock())
        # A pass is running (the batcher thread's or a request's own): arrivals queue behind it.
        self._busy = False
        # The thread that claimed the idle batcher for its next submit (`try_claim`), if any.
        self._claimed_by: int | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Counters (read with stats(); written by the thread running a pass, one at a time).
        self.batches = 0
        self.requests = 0
        self.rows = 0
        self.largest_batch_rows = 0
        self.largest_batch_requests = 0
        self.queue_delay_s_total = 0.0
        self.queue_delay_s_max = 0.0
        self.forward_s_total = 0.0
        self.rejected = 0
        self.dropped = 0  # requests whose caller gave up while they waited
        self.taken = 0  # requests popped from the queue into a batch, or run at once
        self.alone = 0  # claimed passes (`_run_claimed`): one request, nothing merged

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Batcher:
        """Start the batcher thread (idempotent); return self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"batcher-{self.model.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued requests, then stop the thread; later submits evaluate directly."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        """Whether the batcher thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # -- request side ------------------------------------------------------------------------

    def try_claim(self) -> bool:
        """Claim the idle batcher for the calling thread's next `submit`, without waiting.

        True when nothing runs, nobody is queued and no delay is asked for: the thread's next
        `submit` then runs its pass at once, in that thread, and arrivals meanwhile queue behind
        it. The server's event loop uses this to run a small request inline, knowing its pass
        cannot wait. Call `release_claim` afterwards in any case.
        """
        with self._cond:
            if self._stopping or not self.running or self._busy or self._queue or self._delay_s:
                return False
            self._busy = True
            self._claimed_by = threading.get_ident()
            return True

    def release_claim(self) -> None:
        """Give back a claim the calling thread's `submit` did not use (a no-op otherwise)."""
        with self._cond:
            if self._claimed_by == threading.get_ident():
                self._claimed_by = None
                self._busy = False
                if self._queue:
                    self._cond.notify()

    def submit(
        self, inputs: Sequence[torch.Tensor], call: CallState | None = None
    ) -> tuple[torch.Tensor, int]:
        """V(s) [N] for one request's rows [N, *shape] (per input), and the parameter version.

        A request whose `call` has expired or was cancelled while it waited is dropped before
        its batch runs (DEADLINE_EXCEEDED / CANCELLED): nobody waits for it, and the requests
        behind it should not wait for it either (Triton's queue policy).

        Blocks the calling worker thread until the request's batch has run. Must not be called
        while holding `Model.lock` (the batcher thread needs it). Before `start()` and after
        `stop()` it evaluates directly, in the calling thread, under the lock.
        """
        rows = int(inputs[0].shape[0])
        if self._claimed_by is not None and self._claimed_by == threading.get_ident():
            return self._run_claimed(inputs, rows)
        pending = _Pending(inputs, rows, call)
        with self._cond:
            stopped = self._stopping or not self.running
            if not stopped and len(self._queue) >= self.config.max_queue_size:
                self.rejected += 1
                raise ResourceExhausted(
                    f"model {self.model.name!r}: the batch queue is full "
                    f"(max_queue_size = {self.config.max_queue_size} requests waiting; "
                    "raise --max-queue-size or the model's batching.max_queue_size, or retry)"
                )
            # Idle (nothing running, nobody queued, no delay asked for): run at once, here.
            inline = not stopped and not self._busy and not self._queue and self._delay_s == 0
            if inline:
                self._busy = True
                self.taken += 1
            elif not stopped:
                self._queue.append(pending)
                self._queued_rows += rows
                self._cond.notify()
        if stopped and not inline:  # shutting down: evaluate alone, in this thread, under the lock
            values, version, _, _ = self._forward(inputs)
            return values, version
        if inline:
            try:
                self._run_batch([pending])
            finally:
                with self._cond:
                    self._busy = False
                    if self._queue:  # arrived during the pass: the batcher merges them
                        self._cond.notify()
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.values is not None
        return pending.values, pending.version

    def _run_claimed(self, inputs: Sequence[torch.Tensor], rows: int) -> tuple[torch.Tensor, int]:
        """The claiming thread's pass (`try_claim`: the event loop's small request), run here
        and alone, exactly as without batching: no queue entry, no event to wait on, no batch
        record, since nothing was merged. Counted in `stats()["alone"]`. Arrivals meanwhile
        queue, and the batcher thread merges them once this pass is done."""
        with self._cond:
            self._claimed_by = None  # `_busy` stays set from the claim
            self.taken += 1
        try:
            values, version, _, _ = self._forward(inputs)
            self._check_rows(values, rows)
            self.alone += 1
            return values, version
        finally:
            with self._cond:
                self._busy = False
                if self._queue:
                    self._cond.notify()

    # -- batcher thread ----------------------------------------------------------------------

    def _next_batch(self) -> list[_Pending] | None:
        """Wait for requests and the queue delay; pop the next batch (None = stop)."""
        limit = self.config.max_batch_rows
        with self._cond:
            while not self._queue or self._busy:  # a request's own pass runs: let it finish
                if self._stopping and not self._queue:
                    return None
                self._cond.wait()
            if self._delay_s > 0:
                deadline = self._queue[0].queued_at + self._delay_s
                while self._queued_rows < limit and not self._stopping:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            batch = [self._queue.popleft()]
            rows = batch[0].rows
            while self._queue and rows + self._queue[0].rows <= limit:
                rows += self._queue[0].rows
                batch.append(self._queue.popleft())
            self._queued_rows -= rows
            self.taken += len(batch)
            self._busy = True
            return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._run_batch(batch)
            except BaseException as error:  # never leave a request waiting
                for pending in batch:
                    if not pending.done.is_set():
                        pending.error = error
                        pending.done.set()
            finally:
                with self._cond:
                    self._busy = False

    def _forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, int, float, float]:
        """(values, version, pass start, pass seconds) under the model lock."""
        model = self.model
        with model.lock, torch.inference_mode():
            version = model.parameter_version
            started = time.perf_counter()
            values = model.value(list(inputs))
            return values, version, started, time.perf_counter() - started

    def _check_rows(self, values: torch.Tensor, rows: int) -> None:
        """A pass must return one value per input row (a network that does not is a bug)."""
        if values.shape[0] != rows:
            raise RuntimeError(
                f"model {self.model.name!r}: the value network returned {values.shape[0]} "
                f"rows for {rows}"
            )

    def _drop_unwanted(self, batch: list[_Pending]) -> list[_Pending]:
        """The requests whose callers still wait; the others are answered with their error."""
        live = []
        for pending in batch:
            try:
                if pending.call is not None:
                    pending.call.check("dropped from the batch queue before it ran")
            except ServiceError as error:
                self.dropped += 1
                pending.error = error
                pending.done.set()
            else:
                live.append(pending)
        return live

    def _run_batch(self, batch: list[_Pending]) -> None:
        batch = self._drop_unwanted(batch)
        if not batch:
            return
        counts = [pending.rows for pending in batch]
        total = sum(counts)
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = [
                torch.cat([pending.inputs[position] for pending in batch])
                for position in range(len(batch[0].inputs))
            ]
        try:
            values, version, started, forward_s = self._forward(inputs)
            self._check_rows(values, total)
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
                batch[0].done.set()
                return
            # Isolate the failure: rerun each request alone so only the faulty one fails.
            for pending in batch:
                self._run_batch([pending])
            return
        delays = tuple(started - pending.queued_at for pending in batch)
        chunks = (values,) if len(batch) == 1 else values.split(counts)
        for pending, chunk in zip(batch, chunks, strict=True):
            pending.values, pending.version = chunk, version
            pending.done.set()
        self._record(batch, total, delays, forward_s, version)

    def _record(
        self,
        batch: list[_Pending],
        rows: int,
        delays: tuple[float, ...],
        forward_s: float,
        version: int,
    ) -> None:
        self.batches += 1
        self.requests += len(batch)
        self.rows += rows
        self.largest_batch_rows = max(self.largest_batch_rows, rows)
        self.largest_batch_requests = max(self.largest_batch_requests, len(batch))
        self.queue_delay_s_total += sum(delays)
        self.queue_delay_s_max = max(self.queue_delay_s_max, *delays)
        self.forward_s_total += forward_s
        if self.on_batch is not None:
            record = BatchRecord(self.model.name, rows, len(batch), delays, forward_s, version)
            with contextlib.suppress(Exception):  # metrics must never fail a batch
                self.on_batch(record)

    def stats(self) -> dict[str, float]:
        """Counters so far: batches, requests, rows, mean/max rows and delays, rejections."""
        batches = max(self.batches, 1)
        requests = max(self.requests, 1)
        return {
            "batches": self.batches,
            "requests": self.requests,
            "rows": self.rows,
            "mean_batch_rows": self.rows / batches,
            "mean_batch_requests": self.requests / batches,
            "largest_batch_rows": self.largest_batch_rows,
            "largest_batch_requests": self.largest_batch_requests,
            "mean_queue_delay_us": self.queue_delay_s_total / requests * 1e6,
            "max_queue_delay_us": self.queue_delay_s_max * 1e6,
            "mean_forward_ms": self.forward_s_total / batches * 1e3,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "queued": len(self._queue),
            "taken": self.taken,
            "alone": self.alone,
        }


def attach_batchers(
    models: Iterable[Model],
    settings: Settings,
    on_batch: Callable[[BatchRecord], None] | None = None,
) -> list[Batcher]:
    """A (not yet started) batcher for each model with a value network and batching on
    (not for per-agent networks: their [N, n_agents, *shape] steps are not rows to merge).

    Until `Batcher.start()`, submitted requests evaluate directly, as without batching.
    """
    attached = []
    for model in models:
        if model.value_network is None or model.per_agent:
            continue
        config = BatchingConfig.resolve(model.manifest.batching, settings)
        if config.enabled:
            attached.append(Batcher(model, config, on_batch))
    return attached


def stop_batchers(batchers: Sequence[Batcher], timeout: float = 10.0) -> None:
    """Stop the batchers after their queued requests finished (later submits evaluate
    directly)."""
    for batcher in batchers:
        batcher.stop(timeout)
