"""The grpc.aio server: construction, health, reflection, warm-up and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service import estimators
from service.api.admission import Admission
from service.api.auth import TlsFiles, TokenAuthInterceptor, token_auth
from service.api.interceptors import MalformedRequestInterceptor
from service.api.metrics import Metrics
from service.api.servicer import SERVICE_NAME, AdvantageServicer
from service.estimators import threads
from service.estimators.memory import tune_allocator
from service.models.demo import demo_model
from service.models.demo_offpolicy import offpolicy_demo_models
from service.models.dreamer_demo import DREAMER_DEMO_NAME, dreamer_demo_model
from service.models.loading import load_repository
from service.models.model import Model
from service.models.registry import ModelRegistry
from service.replication.follower import Follower, cancel_quietly
from service.runtime import Runtime
from service.runtime.batching import attach_batchers, stop_batchers
from service.runtime.replica import ReplicaState
from service.settings import Settings

if TYPE_CHECKING:
    from service.api.rest import RestServer

log = logging.getLogger(__name__)


def load_models(settings: Settings) -> dict[str, Model]:
    """The models to serve: the repository's, or the built-in demo model when none is given."""
    device = settings.torch_device()
    if settings.model_repository is None:
        models = {"demo": demo_model(device)}
        if settings.dreamer_demo:
            models[DREAMER_DEMO_NAME] = dreamer_demo_model(device)
        if settings.offpolicy_demos:
            models.update(offpolicy_demo_models(device))
        return models
    return load_repository(settings.model_repository, device)


class AdvantageServer:
    """A started-or-not grpc.aio server with its health service and worker pool."""

    def __init__(self, settings: Settings, models: dict[str, Model]) -> None:
        self.settings = settings
        self.registry = ModelRegistry(models)
        replica = ReplicaState(settings.follow, list(self.registry)) if settings.follow else None
        self.runtime = Runtime(
            self.registry,
            max_message_bytes=settings.max_message_bytes,
            replica=replica,
            max_imagination_steps=settings.max_imagination_steps,
        )
        self.metrics = Metrics(self.registry, replica=replica)
        # "starting" → "serving" after warm-up (a replica: "syncing" until it holds the learner's
        # versions) → "draining" in stop().
        self.state = "starting"
        # A replica's loop following its learner (--follow), started by start().
        self.follower = (
            Follower(self.runtime, settings, self._replica_ready) if replica is not None else None
        )
        self._following: asyncio.Task[None] | None = None
        #: Why the server stopped on its own (a replica whose models are not the learner's).
        self.fatal: str | None = None
        self._fatal_stop: asyncio.Task[None] | None = None
        self.rest: RestServer | None = None
        # Dynamic batching: one batcher thread per batching model runs the merged forward passes;
        # request threads wait in its queue, so the pool gets one extra thread per queue slot.
        self.batchers = attach_batchers(self.registry, settings, self.metrics.observe_batch)
        self.runtime.batchers.update({batcher.model.name: batcher for batcher in self.batchers})
        threads = settings.workers + max(
            (b.config.max_queue_size for b in self.batchers), default=0
        )
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix="compute")
        limit = settings.max_message_bytes
        self.auth = token_auth(settings)
        self.tls = TlsFiles.from_settings(settings)
        interceptors: list[grpc.aio.ServerInterceptor] = [MalformedRequestInterceptor()]
        if self.auth is not None:
            interceptors.insert(0, TokenAuthInterceptor(self.auth))
        self.grpc = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                # grpc turns SO_REUSEPORT on by default: a second server on a taken port would
                # start silently and the kernel would split connections between the two.
                ("grpc.so_reuseport", int(settings.reuse_port)),
                # Replicas keep a WatchModels stream open and ping it every 10 s (keepalive) to
                # notice a vanished learner; grpc's default would answer such pings with GOAWAY.
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
            ],
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self.admission = Admission(settings.max_inflight_bytes)
        self.servicer = servicer = AdvantageServicer(
            self.runtime,
            self.executor,
            self.metrics,
            self.admission,
            inline_max_bytes=int(settings.inline_max_kb * 1024),
        )
        servicer.add_to_server(self.grpc)
        self.metrics.watch_small_requests(servicer.inline.counts)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc
        )

    async def start(self) -> None:
        """Start serving; health turns SERVING once the kernels are compiled and every network
        has run once, and on a replica once it holds the learner's current versions."""
        loop = asyncio.get_running_loop()
        self.runtime.versions.bind(loop)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.grpc.start()
        await loop.run_in_executor(self.executor, self._warmup)
        # After the warm-up: its passes are not served batches (until `start`, a batcher
        # evaluates each request by itself, unrecorded, as it does after `stop`).
        for batcher in self.batchers:
            batcher.start()
        if self.follower is None:
            await self._set_serving()
            return
        self.state = "syncing"
        self._following = loop.create_task(self.follower.run())
        self._following.add_done_callback(self._follower_ended)

    async def _set_serving(self) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.state = "serving"

    async def _replica_ready(self) -> None:
        """The follower's first catch-up: SERVING from now on (lag is reported in metrics)."""
        if self.state == "syncing":
            await self._set_serving()

    def _follower_ended(self, task: asyncio.Task[None]) -> None:
        """The follower only ends on its own when the learner's models are not this replica's:
        stop the server, with `fatal` saying why."""
        if task.cancelled() or task.exception() is None or self.state == "draining":
            return
        self.fatal = (
            f"--follow {self.settings.follow}: {task.exception()}; start the replica with the "
            "learner's --model-repository"
        )
        log.error("%s", self.fatal)
        self._fatal_stop = asyncio.get_running_loop().create_task(self.stop(0))

    async def stopped(self) -> None:
        """Wait for the stop the server started on its own (`fatal`), if any."""
        if self._fatal_stop is not None:
            await self._fatal_stop

    def _warmup(self) -> None:
        estimators.warmup()
        for model in self.registry:
            model.warmup()
        self.servicer.measure_small_requests()

    async def start_rest(self, host: str, port: int) -> int:
        """Serve the REST debug surface on host:port (0 = a free port) from this loop; its port.

        Call before or after `start()`; `stop()` stops it with the gRPC server.
        """
        from service.api.rest import RestOptions, RestServer, create_app

        app = create_app(
            self.runtime,
            self.executor,
            self.metrics,
            RestOptions(
                max_body_bytes=self.settings.max_message_bytes,
                state=lambda: self.state,
                auth=self.auth,
                admission=self.admission,
                allowed_hosts=self.settings.rest_allowed_hosts,
                bind_host=host,
                json_workers=self.settings.rest_json_workers,
            ),
        )
        self.rest = RestServer(app, host, port, self.settings.grace_seconds, self.tls)
        await self.rest.start()
        return self.rest.port

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: health NOT_SERVING, then drain in-flight calls for `grace` seconds."""
        self.state = "draining"
        await cancel_quietly(self._following)
        # WatchModels streams end now (they would otherwise hold the grace period).
        self.runtime.versions.close()
        await self.health.enter_graceful_shutdown()
        grace = self.settings.grace_seconds if grace is None else grace
        rest_stop = self.rest.stop() if self.rest is not None else asyncio.sleep(0)
        await asyncio.gather(self.grpc.stop(grace), rest_stop)
        # The grace period is over: whatever still runs is cancelled (worker threads stop at
        # their next checkpoint, writes never commit), queued work is dropped.
        self.admission.cancel_all()
        self.runtime.batchers.clear()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.follower is not None:
            self.follower.close()
        await asyncio.to_thread(stop_batchers, self.batchers, 1.0)

    async def wait_for_termination(self) -> None:
        """Block until the server stops."""
        await self.grpc.wait_for_termination()
        if self.rest is not None:
            await self.rest.wait_stopped()


def create_server(
    address: str, settings: Settings | None = None, models: dict[str, Model] | None = None
) -> tuple[AdvantageServer, int]:
    """Build a server bound to `address` ("host:0" picks a free port); return it and its port.

    Call from a running event loop, then `await server.start()`.
    """
    settings = settings or Settings()
    server = AdvantageServer(settings, models if models is not None else load_models(settings))
    if server.tls is not None:
        port = server.grpc.add_secure_port(address, server.tls.grpc_credentials())
    else:
        port = server.grpc.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return server, port


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    tune_allocator()
    # The one thread policy (service.estimators.threads): each compute worker gets cores // workers
    # threads for torch's intra-op pool and for the estimator kernels, never more in total.
    threads.apply(threads.for_workers(settings.workers))
    server, port = create_server(f"{settings.host}:{settings.port}", settings)
    if settings.rest_port:
        rest_port = await server.start_rest(settings.rest_host, settings.rest_port)
        scheme = "http" if server.tls is None else "https"
        log.info("REST debug surface on %s://%s:%d/docs", scheme, settings.rest_host, rest_port)
    await server.start()
    names = ", ".join(model.name for model in server.registry)
    security = "plaintext" if server.tls is None else "mutual TLS" if server.tls.mutual else "TLS"
    role = "learner" if settings.follow is None else f"replica of {settings.follow}"
    log.info(
        "advantage-service listening on %s:%d (models: %s; %s; %s)",
        settings.host,
        port,
        names,
        security,
        role,
    )
    loop = asyncio.get_running_loop()
    stopping: list[asyncio.Task[None]] = []

    def request_stop(signum: int) -> None:
        log.info(
            "received %s, draining for up to %.0f s",
            signal.Signals(signum).name,
            settings.grace_seconds,
        )
        if not stopping:
            stopping.append(loop.create_task(server.stop()))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, request_stop, signum)
    await server.wait_for_termination()
    if stopping:
        await stopping[0]
    await server.stopped()
    if server.fatal is not None:
        raise SystemExit(f"advantage-service: {server.fatal}")
    # A worker thread cannot be interrupted inside a long forward pass; the process still exits
    # within the grace period + 1 s (abandoned work commits nothing: it was cancelled).
    if not await asyncio.to_thread(server.admission.wait_idle, 1.0):
        log.warning("exiting with computations still running after the grace period")
        logging.shutdown()
        os._exit(0)
