"""Admission control shared by the gRPC and REST transports.

- A bound on the request bytes being worked on at once (`--max-inflight-mb`): a request that
  would push past it is refused with RESOURCE_EXHAUSTED before any work, instead of every
  request being admitted and the process running out of memory.
- The `CallState` of every admitted request, so that shutdown can cancel what is left after
  the grace period, and a count of requests still running in worker threads, so that the process
  can exit on time even when a thread is stuck in a long computation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from service.errors import ResourceExhausted
from service.runtime.call import CallState

T = TypeVar("T")


class Admission:
    """Request bytes in flight, live calls and busy worker threads of one server."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes_in_flight = 0
        self._calls: set[CallState] = set()
        self._lock = threading.Lock()
        self._busy = 0
        self._idle = threading.Condition(self._lock)

    @contextmanager
    def admit(self, nbytes: int, call: CallState) -> Iterator[None]:
        """Hold `nbytes` of the budget (and track `call`) for the block; RESOURCE_EXHAUSTED
        when the budget cannot take them now."""
        with self._lock:
            if self.bytes_in_flight + nbytes > self.max_bytes:
                busy = self.bytes_in_flight
                raise ResourceExhausted(
                    f"server busy: a request of {nbytes} bytes with {busy} bytes already being "
                    f"worked on is over --max-inflight-mb ({self.max_bytes} bytes); retry later"
                    if busy
                    else f"request: {nbytes} bytes, over --max-inflight-mb ({self.max_bytes} bytes)"
                )
            self.bytes_in_flight += nbytes
            self._calls.add(call)
        try:
            yield
        finally:
            with self._lock:
                self.bytes_in_flight -= nbytes
                self._calls.discard(call)

    def working(self, work: Callable[[], T]) -> Callable[[], T]:
        """`work`, counted as busy while it runs (in a worker thread)."""

        def counted() -> T:
            with self._lock:
                self._busy += 1
            try:
                return work()
            finally:
                with self._lock:
                    self._busy -= 1
                    if not self._busy:
                        self._idle.notify_all()

        return counted

    def cancel_all(self) -> int:
        """Mark every admitted call cancelled (shutdown after the grace period); how many."""
        with self._lock:
            calls = list(self._calls)
        for call in calls:
            call.cancel()
        return len(calls)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no worker thread runs admitted work; whether that happened in time."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)
