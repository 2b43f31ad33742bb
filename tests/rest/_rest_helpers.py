"""A real server (gRPC + REST on loopback ports) on a background event loop, for REST tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

import grpc
from prometheus_client.parser import text_string_to_metric_families

from service.config import Settings
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from service.server import AdvantageServer, create_server

T = TypeVar("T")


class RestTestServer:
    """`create_server` + `start_rest` + `start` on 127.0.0.1:0, in a thread with its own loop."""

    def __init__(self, settings: Settings | None, models: dict[str, Model] | None) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.server: AdvantageServer | None = None
        self.grpc_port = self.rest_port = 0
        self._thread = threading.Thread(
            target=self._run, args=(settings or Settings(), models), name="rest-test", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(120):
            raise TimeoutError("server did not start within 120 s")
        if self._failure is not None:
            raise self._failure

    def _run(self, settings: Settings, models: dict[str, Model] | None) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._stopped = asyncio.Event()
            try:
                self.server, self.grpc_port = create_server("127.0.0.1:0", settings, models)
                self.rest_port = await self.server.start_rest("127.0.0.1", 0)
                await self.server.start()
            except BaseException as error:
                self._failure = error
                raise
            finally:
                self._ready.set()
            await self._stopped.wait()  # not wait_for_termination: gRPC ends before REST does

        with suppress(BaseException):
            self._loop.run_until_complete(main())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(120)

    def stop(self) -> None:
        async def stop() -> None:
            assert self.server is not None
            try:
                await self.server.stop(0)
            finally:
                self._stopped.set()

        if self.server is not None and self._thread.is_alive():
            self.call(stop())
        self._thread.join(30)


@contextmanager
def rest_server(
    settings: Settings | None = None, models: dict[str, Model] | None = None
) -> Iterator[RestTestServer]:
    """A started server with REST; stopped on exit."""
    server = RestTestServer(settings, models)
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def grpc_stub(target: str) -> Iterator[pb_grpc.AdvantageServiceStub]:
    with grpc.insecure_channel(target) as channel:
        yield pb_grpc.AdvantageServiceStub(channel)


def scrape(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text → {(sample name, sorted labels): value}."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
