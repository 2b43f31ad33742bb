"""The grpc.aio server: construction, health, reflection, warm-up and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service import estimators
from service.config import Settings
from service.models.demo import demo_model
from service.models.loading import load_repository
from service.models.model import Model
from service.models.registry import ModelRegistry
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from service.servicer import AdvantageServicer

log = logging.getLogger(__name__)
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AdvantageService"].full_name


def load_models(settings: Settings) -> dict[str, Model]:
    """The models to serve: the repository's, or the built-in demo model when none is given."""
    device = settings.torch_device()
    if settings.model_repository is None:
        return {"demo": demo_model(device)}
    return load_repository(settings.model_repository, device)


class AdvantageServer:
    """A started-or-not grpc.aio server with its health service and worker pool."""

    def __init__(self, settings: Settings, models: dict[str, Model]) -> None:
        self.settings = settings
        self.registry = ModelRegistry(models)
        self.executor = ThreadPoolExecutor(settings.workers, thread_name_prefix="compute")
        limit = settings.max_message_bytes
        self.grpc = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
            ]
        )
        pb_grpc.add_AdvantageServiceServicer_to_server(
            AdvantageServicer(self.registry, self.executor), self.grpc
        )
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc
        )

    async def start(self) -> None:
        """Start serving; health turns SERVING once the estimator kernels are compiled."""
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.grpc.start()
        await asyncio.get_running_loop().run_in_executor(self.executor, estimators.warmup)
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """Graceful stop: health NOT_SERVING, then drain in-flight calls for `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(self.settings.grace_seconds if grace is None else grace)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def wait_for_termination(self) -> None:
        """Block until the server stops."""
        await self.grpc.wait_for_termination()


def create_server(
    address: str, settings: Settings | None = None, models: dict[str, Model] | None = None
) -> tuple[AdvantageServer, int]:
    """Build a server bound to `address` ("host:0" picks a free port); return it and its port.

    Call from a running event loop, then `await server.start()`.
    """
    settings = settings or Settings()
    server = AdvantageServer(settings, models if models is not None else load_models(settings))
    port = server.grpc.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    return server, port


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then stop gracefully."""
    server, port = create_server(f"{settings.host}:{settings.port}", settings)
    await server.start()
    names = ", ".join(model.name for model in server.registry)
    log.info("advantage-service listening on %s:%d (models: %s)", settings.host, port, names)
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
