"""Synchronous client (a grpc channel)."""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal

import grpc

from advantage_client._core import (
    DEFAULT_MAX_MESSAGE_MB,
    DEFAULT_SERVICE_CONFIG,
    ClientCore,
    Finished,
    Step,
    Steps,
    Unary,
    advance,
    channel_options,
    channel_target,
    rpc_errors,
    stream_backoff,
)
from advantage_client.errors import UnavailableError

__all__ = [
    "DEFAULT_MAX_MESSAGE_MB",
    "DEFAULT_SERVICE_CONFIG",
    "AdvantageClient",
    "channel_options",
    "channel_target",
]


class AdvantageClient(ClientCore):
    """Blocking client of advantage-service: ``AdvantageClient(target, timeout=..., ...)``.

    Use as a context manager, or call `close()`. Failed calls raise
    `advantage_client.AdvantageServiceError` (a subclass per status code). The constructor's
    arguments are described on `__init__`; the methods and their arguments are the asyncio
    client's too.
    """

    _channels = grpc
    _awaits: ClassVar[Literal[False]] = False

    def close(self) -> None:
        """Close the channel; calls in flight are cancelled. Idempotent."""
        self._channel.close()

    def __enter__(self) -> AdvantageClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, steps: Steps[Any]) -> Any:
        """Run a method's steps, performing each RPC blocking."""
        outcome = advance(steps, None)
        while not isinstance(outcome, Finished):
            outcome = advance(steps, self._perform(outcome))
        return outcome.value

    def _perform(self, step: Step) -> Any:
        if isinstance(step, Unary):
            with rpc_errors():
                return self._invoke(step)
        attempt = 1
        while True:
            stream = self._invoke(step)
            try:
                with rpc_errors(cancel=stream):
                    for message in stream:
                        step.consume(message)
                return None
            except UnavailableError:
                if step.restart is None or attempt >= self._stream_attempts:
                    raise
                time.sleep(stream_backoff(attempt))
                attempt += 1
                step.restart()
