"""Asyncio client (grpc.aio), the twin of `advantage_client.AdvantageClient`."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

import grpc

from advantage_client._core import (
    ClientCore,
    Finished,
    Step,
    Steps,
    Unary,
    advance,
    rpc_errors,
    stream_backoff,
)
from advantage_client.errors import UnavailableError

__all__ = ["AsyncAdvantageClient"]


class AsyncAdvantageClient(ClientCore):
    """Asyncio client of advantage-service: `AdvantageClient`'s arguments and methods, as
    coroutines.

    Use as an async context manager, or await `close()`. Encoding and decoding run on the event
    loop (numpy copies; milliseconds per MB).
    """

    _channels = grpc.aio
    _awaits: ClassVar[Literal[True]] = True

    async def close(self, grace: float | None = None) -> None:
        """Close the channel; calls in flight get `grace` seconds, then are cancelled."""
        await self._channel.close(grace)

    async def __aenter__(self) -> AsyncAdvantageClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, steps: Steps[Any]) -> Any:
        """Run a method's steps, awaiting each RPC."""
        outcome = advance(steps, None)
        while not isinstance(outcome, Finished):
            outcome = advance(steps, await self._perform(outcome))
        return outcome.value

    async def _perform(self, step: Step) -> Any:
        attempt = 1
        while True:
            call = self._invoke(step)
            try:
                with rpc_errors(cancel=call):
                    if isinstance(step, Unary):
                        return await call
                    async for message in call:
                        step.consume(message)
                return None
            except UnavailableError:
                restart = getattr(step, "restart", None)
                if restart is None or attempt >= self._stream_attempts:
                    raise
                await asyncio.sleep(stream_backoff(attempt))
                attempt += 1
                restart()
