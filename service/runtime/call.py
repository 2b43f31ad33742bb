"""Whether the caller still wants a result: its deadline, and whether it cancelled.

The transport creates one `CallState` per request (from the gRPC deadline; the servicer marks it
cancelled when grpc.aio cancels the handler). Work in a worker thread cannot be interrupted, so
it asks at its checkpoints — above all right before a write commits — and stops with
DEADLINE_EXCEEDED / CANCELLED, leaving the model unchanged.
"""

from __future__ import annotations

import time

from service.errors import Cancelled, DeadlineExceeded


class CallState:
    """A request's deadline (time.monotonic() seconds, None = none) and cancellation flag."""

    def __init__(self, deadline: float | None = None) -> None:
        self.deadline = deadline
        # A flag, not a threading.Event: nothing waits on it (workers poll it at checkpoints),
        # and an Event (a Condition and a lock) per call cost ~10 µs on the small-call path.
        self._cancelled = False

    @classmethod
    def with_timeout(cls, seconds: float | None) -> CallState:
        """A call that has `seconds` left (None = no deadline)."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    def cancel(self) -> None:
        """The caller gave up (or the server is shutting down)."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        """Whether `cancel()` was called."""
        return self._cancelled

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    @property
    def wanted(self) -> bool:
        """Whether the caller still waits for the result."""
        return not (self.cancelled or self.expired)

    def check(self, what: str) -> None:
        """Raise CANCELLED / DEADLINE_EXCEEDED if the caller no longer waits; `what` says what
        was not done ("the update was not applied")."""
        if self.cancelled:
            raise Cancelled(f"request cancelled by the client or the server's shutdown: {what}")
        if self.expired:
            raise DeadlineExceeded(f"the call's deadline passed: {what}")
