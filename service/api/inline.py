"""When a small ComputeAdvantage may run on the event loop: how quick its model's recent ones were.

The loop may be held for at most INLINE_MAX_S by one request. A request is measured on the
thread that runs it: its wall-clock time, and the part of it the thread spent preempted (ready
to run, waiting for a core: the scheduler's run-queue time, Linux `schedstat`). What is left is
how long the request held its thread, computing or blocked (a sleep, a lock, the GIL, a device).
A run is quick when that is at most INLINE_MAX_S:

- preemption by other processes is not the request's cost (the loop waits for the core either
  way), so a preempted quick run is still quick on a busy machine;
- a network that waits without computing (a sleep, a device) holds the loop for its wait;
- a network that computes longer than INLINE_MAX_S is slow wherever it runs.

A model runs inline while fewer than two of its last three runs there were slow, so a single
slow run (a garbage collection) does not send it to the pool. On the pool a run also waits for
the GIL (held by the event loop and the other workers), so on a busy server every pooled
measurement was slow and a quick model stayed on the pool for good. A model whose pooled run
was slow although its CPU time was within INLINE_MAX_S is tried inline again, at most once per
INLINE_RETRY_S: a network that waits without computing holds the loop at most that often.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

#: A small ComputeAdvantage runs on the event loop only when its model's recent ones were quick
#: (see the module docstring): the loop may be held that long, and a slow network never holds it.
INLINE_MAX_S = 0.005
#: A model whose last small request was slow on the pool only by its waits is tried inline again
#: at most this often.
INLINE_RETRY_S = 1.0
#: How many of a model's last runs on the event loop decide whether the next runs there.
INLINE_WINDOW = 3
Result = TypeVar("Result")
_SCHEDSTAT = "/proc/thread-self/schedstat"  # ns on a CPU, ns waiting on a run queue, slices


class _ThreadClock:
    """The calling thread's CPU and run-queue seconds (one read of its `schedstat`, kept open
    per thread); without it (not Linux, no schedstat), CPU time only and no run-queue time,
    so the wall clock decides as it did before."""

    def __init__(self) -> None:
        self._fd: int | None = None
        try:
            self._fd = os.open(_SCHEDSTAT, os.O_RDONLY)
            self.read()
        except (OSError, ValueError, IndexError):
            if self._fd is not None:  # opened but unreadable: close it, use the fallback
                os.close(self._fd)
            self._fd = None

    def read(self) -> tuple[float, float]:
        if self._fd is None:
            return time.thread_time(), 0.0
        fields = os.pread(self._fd, 64, 0).split()
        return int(fields[0]) * 1e-9, int(fields[1]) * 1e-9

    def __del__(self) -> None:  # the thread ended
        if self._fd is not None:
            os.close(self._fd)


_clocks = threading.local()


def _thread_clock() -> _ThreadClock:
    clock = getattr(_clocks, "clock", None)
    if clock is None:
        clock = _clocks.clock = _ThreadClock()
    return clock


@dataclass(frozen=True, slots=True)
class SmallRun:
    """One small request's measurement, on the thread that ran it."""

    wall_s: float
    cpu_s: float
    preempted_s: float  # of wall_s, waiting for a core (not counted against the request)
    pooled: bool  # it ran on a worker thread, not on the event loop

    @property
    def held_s(self) -> float:
        """How long it held its thread: computing or blocked, but not preempted."""
        return self.wall_s - self.preempted_s

    @property
    def quick(self) -> bool:
        return self.held_s <= INLINE_MAX_S


def measured(
    work: Callable[[], Result], record: Callable[[SmallRun], None], pooled: bool
) -> Callable[[], Result]:
    """`work` as a function that runs it and passes its `SmallRun` to `record` (also when it
    raises)."""

    def run() -> Result:
        clock = _thread_clock()
        cpu, queued = clock.read()
        start = time.perf_counter()
        try:
            return work()
        finally:
            wall = time.perf_counter() - start
            cpu_end, queued_end = clock.read()
            record(SmallRun(wall, cpu_end - cpu, min(queued_end - queued, wall), pooled))

    return run


class _ModelRuns:
    """One model's recent small runs: the last few on the event loop, the last on the pool, and
    when it was last tried inline."""

    __slots__ = ("inline", "pooled", "tried_at")

    def __init__(self) -> None:
        self.inline: deque[SmallRun] = deque(maxlen=INLINE_WINDOW)
        self.pooled: SmallRun | None = None
        self.tried_at = -math.inf


class InlinePolicy:
    """Each model's recent small runs, and its retries inline. Written by the event loop and
    the workers (appends and attribute writes, atomic under the GIL: no lock; the counts of
    `counts` under one), read on the event loop."""

    def __init__(self) -> None:
        self.last: dict[str, SmallRun] = {}  # model name → its last small run, wherever it ran
        self._runs: dict[str, _ModelRuns] = {}
        # (model name, "event_loop" | "pool") → small requests served there (`counts`); the
        # start-up measurement is not one. Workers count concurrently: under a lock.
        self._served: dict[tuple[str, str], int] = {}
        self._served_lock = threading.Lock()

    def allows(self, name: str) -> bool:
        """Whether a small request of model `name` may run on the event loop now (only
        `_inline_claim`'s other conditions left). Call it on the event loop: a retry it grants
        is counted at once.

        Inline while fewer than two of its last INLINE_WINDOW runs on the loop were slow (one
        alone if that is all there is): a single slow run (a garbage collection, a burst of
        other work) does not send a quick model to the pool. Otherwise the retry rule of the
        module docstring."""
        runs = self._runs.get(name)
        if runs is None:  # never measured: the pool measures it
            return False
        recent = runs.inline
        if recent and sum(not run.quick for run in recent) < min(2, len(recent)):
            return True
        pooled = runs.pooled
        if pooled is None or pooled.cpu_s > INLINE_MAX_S:
            return False
        now = time.monotonic()
        if now - runs.tried_at < INLINE_RETRY_S:
            return False
        runs.tried_at = now
        recent.clear()  # the retry alone decides what comes next
        return True

    def timed(self, work: Callable[[], Result], name: str, pooled: bool) -> Callable[[], Result]:
        """`work`, its run remembered as one of model `name`'s small runs."""
        return measured(work, lambda run: self.record(name, run), pooled)

    def record(self, name: str, run: SmallRun, tried_inline: bool = False) -> None:
        """Remember `run`, a small run of model `name`; `tried_inline`: it counts as a try on
        the event loop (the start-up measurement), so a slow model waits INLINE_RETRY_S."""
        runs = self._runs.get(name)
        if runs is None:
            runs = self._runs[name] = _ModelRuns()
        if run.pooled:
            runs.pooled = run
        else:
            runs.inline.append(run)
        if tried_inline:
            runs.tried_at = time.monotonic()
        else:
            key = (name, "pool" if run.pooled else "event_loop")
            with self._served_lock:
                self._served[key] = self._served.get(key, 0) + 1
        self.last[name] = run

    def counts(self) -> dict[tuple[str, str], int]:
        """Small requests served so far by (model name, "event_loop" | "pool")."""
        with self._served_lock:
            return dict(self._served)
