"""uvicorn embedded in the gRPC server's event loop: start, learn the port, stop gracefully.

With the server's `TlsFiles` it serves HTTPS (and asks for client certificates under mutual TLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from service.api.auth import TlsFiles

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the gRPC server's `serve()` owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (port 0 = a free one), IPv6 when the host has a colon."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"--rest-host/--rest-port: could not bind {host}:{port}: {error}") from error
    return sock


class RestServer:
    """A FastAPI app served by uvicorn on the running event loop, beside the gRPC server."""

    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        grace_seconds: float = 10.0,
        tls: TlsFiles | None = None,
    ) -> None:
        self._socket = bind(host, port)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self.scheme = "http" if tls is None else "https"
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(grace_seconds, 0.1),
            **(tls.uvicorn_options() if tls is not None else {}),
        )
        self._server = _EmbeddedServer(config)
        self._app = app
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve in a task on the running loop; return once the socket accepts requests."""
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._socket]), name="uvicorn"
        )
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the start-up failure
                raise RuntimeError("uvicorn exited during start-up")
            await asyncio.sleep(0.01)

    async def wait_stopped(self) -> None:
        """Block until uvicorn has stopped (after `stop()`)."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Stop accepting connections, let in-flight requests finish (up to the grace period)."""
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        self._socket.close()
        context = getattr(self._app.state, "context", None)
        if context is not None:
            context.close()  # REST's JSON pool, once no request needs it
