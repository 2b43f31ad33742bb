"""The replica's loop: subscribe to the learner, copy each version it announces, install it.

One connection attempt (`_follow_once`), on a fresh channel:

1. ListModels: the learner's models must be this replica's (names, inputs, networks, action,
   defaults, dtype); otherwise `LearnerMismatch`, fatal: the server stops with one line.
2. WatchModels: the learner's current version of every model, then each commit. A reader task
   notes each announcement (`ReplicaState.announce`) and wakes the syncer.
3. The syncer pulls every model whose held version differs from the announced one with
   GetParameters (the learner's latest, one consistent version), stages the tensors on the CPU
   and installs them under the model's lock, in a thread of its own (never the event loop, never
   the compute pool); the model's version becomes the learner's. Once every model holds the
   learner's announced version, the first time, `on_ready` runs (health SERVING).

When the stream ends or fails (the learner stopped or is unreachable), the replica keeps serving
what it holds, reports itself disconnected and lagging (metrics), and tries again after an
exponential backoff with jitter: 0.1 s doubling up to 5 s, each delay drawn from [d/2, d],
reset once a subscription succeeds. Keepalive pings (10 s) notice a learner that vanished
without closing the connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from service.runtime import Runtime
from service.runtime.replica import ReplicaState
from service.settings import Settings
from service.wire.learner import LearnerMismatch, LearnerStub, compare_models, stage

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 5.0
#: Deadline of ListModels and of one GetParameters stream.
RPC_TIMEOUT_S = 30.0
#: Keepalive on the channel to the learner (the servers accept pings this often: server.py).
KEEPALIVE_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000

__all__ = ["BACKOFF_INITIAL_S", "BACKOFF_MAX_S", "Follower", "LearnerMismatch", "backoff_delay"]


def backoff_delay(attempt: int, rng: random.Random) -> float:
    """Seconds before reconnection attempt `attempt` (0, 1, …): exponential, bounded, jittered."""
    ceiling = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** min(attempt, 32))
    return ceiling * (0.5 + 0.5 * rng.random())


class Follower:
    """Keeps the replica's models copies of the learner's (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        settings: Settings,
        on_ready: Callable[[], Awaitable[None]],
    ) -> None:
        if runtime.replica is None or settings.follow is None:
            raise ValueError("a Follower needs a replica's runtime and settings.follow")
        self._runtime = runtime
        self.state: ReplicaState = runtime.replica
        self.learner = settings.follow
        self._on_ready = on_ready
        token = settings.auth_token or settings.admin_token  # WatchModels etc. are reads
        self._metadata = (("authorization", f"Bearer {token}"),) if token else None
        self._credentials = (
            grpc.ssl_channel_credentials(root_certificates=settings.follow_tls_ca.read_bytes())
            if settings.follow_tls_ca is not None
            else None
        )
        limit = settings.max_message_bytes
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            ("grpc.keepalive_time_ms", KEEPALIVE_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        # Staging and installing copies: its own thread, so a busy compute pool never delays a
        # copy (installing waits only for the model's lock).
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="replica-sync")
        self.attempts = 0  # connection attempts so far
        self.subscriptions = 0  # successful subscriptions (the first, then each resubscription)

    def close(self) -> None:
        """Release the sync thread (after the follower's task was cancelled)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _channel(self) -> grpc.aio.Channel:
        if self._credentials is None:
            return grpc.aio.insecure_channel(self.learner, options=self._options)
        return grpc.aio.secure_channel(self.learner, self._credentials, options=self._options)

    async def run(self) -> None:
        """Follow the learner until cancelled; raises `LearnerMismatch` (fatal)."""
        rng = random.Random()
        attempt = 0
        while True:
            was_connected = self.subscriptions
            self.attempts += 1
            try:
                await self._follow_once()
                reason = "it closed the stream (stopping?)"
            except grpc.aio.AioRpcError as error:
                reason = f"{error.code().name}: {error.details()}"
            except LearnerMismatch:
                raise
            except Exception as error:  # a bug: keep serving what is held, log, try again
                log.exception("replica: following the learner %s failed", self.learner)
                reason = f"{type(error).__name__}: {error}"
            finally:
                self.state.set_connected(False)
            if self.subscriptions > was_connected:
                attempt = 0  # this attempt subscribed: the outage starts now
            delay = backoff_delay(attempt, rng)
            level = logging.WARNING if attempt == 0 else logging.INFO
            log.log(
                level,
                "replica: no subscription to the learner %s (%s); serving the versions held, "
                "retrying in %.2f s",
                self.learner,
                reason,
                delay,
            )
            attempt += 1
            await asyncio.sleep(delay)

    async def _follow_once(self) -> None:
        async with self._channel() as channel:
            learner = LearnerStub(channel, self._metadata)
            compare_models(self._runtime.registry, await learner.list_models(RPC_TIMEOUT_S))
            wake = asyncio.Event()
            watcher = asyncio.create_task(self._watch(learner, wake))
            syncer = asyncio.create_task(self._sync(learner, wake))
            try:
                done, _ = await asyncio.wait({watcher, syncer}, return_when="FIRST_COMPLETED")
            finally:
                for task in (watcher, syncer):
                    task.cancel()
                await asyncio.gather(watcher, syncer, return_exceptions=True)
            for task in done:
                task.result()  # the syncer's or the watcher's error, if any

    async def _watch(self, learner: LearnerStub, wake: asyncio.Event) -> None:
        """Note each announcement; returns when the learner ends the stream."""
        async for name, version in learner.watch():
            if not self.state.connected:
                self.state.set_connected(True)
                self.subscriptions += 1
                log.info("replica: subscribed to the learner %s", self.learner)
            if name in self.state.models:
                self.state.announce(name, version)
                wake.set()

    async def _sync(self, learner: LearnerStub, wake: asyncio.Event) -> None:
        """Copy every model whose held version is not the announced one; forever."""
        loop = asyncio.get_running_loop()
        while True:
            await wake.wait()
            wake.clear()
            for model in self._runtime.registry:
                sync = self.state.models[model.name]
                if sync.announced is None or sync.held == sync.announced:
                    continue
                chunks = await learner.parameters(model, RPC_TIMEOUT_S)
                held = sync.held

                def stage_and_install(model=model, chunks=chunks, held=held) -> int:
                    version, staged = stage(model, chunks)
                    if version != held:
                        self.state.install(model, staged, version)
                    return version

                version = await loop.run_in_executor(self._executor, stage_and_install)
                if held is not None and version < held:
                    log.warning(
                        "replica: the learner's model %r went back from version %d to %d "
                        "(restarted?); serving its parameters",
                        model.name,
                        held,
                        version,
                    )
            if not self.state.ready and self.state.caught_up:
                self.state.ready = True
                versions = ", ".join(f"{n} {s.held}" for n, s in sorted(self.state.models.items()))
                log.info("replica: holds the learner's current versions (%s)", versions)
                await self._on_ready()


async def cancel_quietly(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait for it, swallowing its cancellation (or error)."""
    if task is None:
        return
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
