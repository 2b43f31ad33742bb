"""Real advantage-service servers for tests: on their own event loop in a background thread,
bound to 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from service.models.model import Model
from service.server import AdvantageServer, create_server
from service.settings import Settings

T = TypeVar("T")


class RunningServer:
    """A server running on its own event loop in a background thread."""

    def __init__(
        self,
        settings: Settings,
        models: dict[str, Model] | None,
        rest: bool = False,
        port: int = 0,
    ) -> None:
        self._rest = rest
        self._address = f"127.0.0.1:{port}"
        self.rest_port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self.server: AdvantageServer | None = None
        self.port = 0
        self._thread = threading.Thread(
            target=self._run, args=(settings, models), name="grpc-server", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(120):
            raise TimeoutError("server did not start within 120 s")
        if self._failure is not None:
            raise self._failure

    def _run(self, settings: Settings, models: dict[str, Model] | None) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self.server, self.port = create_server(self._address, settings, models)
            if self._rest:
                self.rest_port = await self.server.start_rest("127.0.0.1", 0)
            await self.server.start()

        try:
            self._loop.run_until_complete(start())
        except BaseException as error:  # surfaced in the test thread
            self._failure = error
            return
        finally:
            self._ready.set()
        self._loop.run_forever()

    @property
    def target(self) -> str:
        """The gRPC "host:port" for a client channel."""
        return f"127.0.0.1:{self.port}"

    grpc_target = target

    @property
    def url(self) -> str:
        """Base URL of the REST surface (started with `rest=True`)."""
        return f"http://127.0.0.1:{self.rest_port}"

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(120)

    def stop(self, grace: float = 0.0) -> None:
        """Stop gracefully and join the thread."""
        if self.server is not None and self._thread.is_alive():
            self.call(self.server.stop(grace))
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)


@contextmanager
def running_server(
    settings: Settings | None = None,
    models: dict[str, Model] | None = None,
    rest: bool = False,
    port: int = 0,
) -> Iterator[RunningServer]:
    """Start a real server on 127.0.0.1:`port` (0: a free one; demo model unless
    `models`/repository given), with the REST surface on another free port when `rest`."""
    server = RunningServer(settings or Settings(), models, rest, port)
    try:
        yield server
    finally:
        server.stop()


def start_server_process(
    *arguments: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], int]:
    """`advantage-service serve --host 127.0.0.1 --port 0 ARGUMENTS` as a separate process;
    returns (the process, its gRPC port) once it logged that it listens (stderr is a pipe)."""
    command = [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(
        [*command, *arguments],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ADVANTAGE_REST_PORT": "0", **(env or {})},
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        found = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
        if found:
            return process, int(found.group(1))
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"server did not report its port: {process.stderr.read()}")
