"""The REST debug surface: a FastAPI app over the gRPC server's runtime, pool and metrics.

Every compute route turns JSON into the protobuf request a gRPC client would send and calls the
shared handler in `service.api.handlers` on the server's worker pool, so numbers, validation and
error codes are the gRPC ones. Errors are JSON `{"code": "<gRPC code name>", "message": "..."}`
with the HTTP status of `service.errors` (400, 404, 412, 413, 503; 500 with an incident id),
produced by the exception handlers below and nowhere else (and, for requests refused before
routing, by the cross-site guard of `service.api.rest.guard`: 403 for a foreign Host or Origin,
415 for a write that is not JSON).

JSON is parsed and written on the app's own small thread pool (`json_workers` threads), never on
the compute pool: a 50 MB body then never holds a compute thread, so gRPC and REST compute never
queue behind a parse; the computation itself runs on the shared compute pool.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.admission import Admission
from service.api.auth import BearerToken, rest_path_needs_token
from service.api.metrics import Metrics
from service.api.rest import schema
from service.api.rest.context import RestContext, ServerState
from service.api.rest.guard import RequestGuard, resolve_allowed_hosts
from service.api.rest.routes import compute, debug, docs, health, models
from service.errors import ServiceError
from service.runtime import Runtime

log = logging.getLogger(__name__)

# Swagger UI 5 and ReDoc dist files, shipped by the `fastapi-offline` wheel (no CDN at run time).
DOCS_ASSETS = Path(str(resources.files("fastapi_offline") / "static"))
HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "RESOURCE_EXHAUSTED",
}


def error_response(code: str, message: str, status: int) -> JSONResponse:
    """The one error body: {"code": gRPC code name, "message": names the field}."""
    return JSONResponse({"code": code, "message": message}, status_code=status)


def service_error_response(error: ServiceError) -> JSONResponse:
    """A `ServiceError` as its HTTP status and error body."""
    return error_response(error.code.name, error.message, error.http_status)


def internal_error_response() -> JSONResponse:
    """500 with an incident id; the traceback goes to the log only."""
    incident = uuid.uuid4().hex[:12]
    log.exception("internal error %s", incident)
    return error_response("INTERNAL", f"internal error (incident {incident})", 500)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, error: ServiceError) -> JSONResponse:
        return service_error_response(error)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, "UNKNOWN")
        return error_response(code, str(error.detail), error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return error_response("INVALID_ARGUMENT", f"{where}: {first['msg']}", 400)

    @app.middleware("http")
    async def internal_errors(request: Request, call_next: Callable[[Request], Any]) -> Any:
        try:
            return await call_next(request)
        except Exception:  # anything the handlers above did not claim
            return internal_error_response()


def _install_auth(app: FastAPI, auth: BearerToken) -> None:
    """/v1/ and /debug/sample need a token; the caller's scope goes to `request.state.auth_scope`
    for the routes that write (`service.api.auth.rest_scope`, `require_write`)."""
    app.state.auth = auth

    @app.middleware("http")
    async def require_token(request: Request, call_next: Callable[[Request], Any]) -> Any:
        if rest_path_needs_token(request.url.path):
            try:
                request.state.auth_scope = auth.check(request.headers.get("authorization"))
            except ServiceError as error:
                return service_error_response(error)
        return await call_next(request)


class GuardMiddleware:
    """Refuses foreign Host/Origin and non-JSON writes before routing (pure ASGI: the body is
    not touched)."""

    def __init__(self, app: ASGIApp, guard: RequestGuard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                scheme = scope.get("scheme", "http")
                self.guard.check(scope["method"], scope["path"], scheme, Headers(scope=scope))
            except ServiceError as error:
                await service_error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class RestOptions:
    """How the REST surface of one server behaves (defaults: a lone app for tests)."""

    max_body_bytes: int = 64 << 20  # --max-message-mb
    state: ServerState = lambda: "serving"  # the server's lifecycle
    auth: BearerToken | None = None  # tokens; None = open
    admission: Admission | None = None  # the server's in-flight budget; None = unbounded
    allowed_hosts: Sequence[str] | None = None  # --rest-allowed-hosts (None = bind + loopback)
    bind_host: str | None = None  # --rest-host
    json_workers: int = 1  # threads that parse and write JSON


def create_app(
    runtime: Runtime, executor: Executor, metrics: Metrics, options: RestOptions | None = None
) -> FastAPI:
    """The REST app over a server's models, worker pool and metrics (/v1/ behind `auth`)."""
    options = options or RestOptions()
    app = FastAPI(
        title="advantage-service",
        summary="REST debug surface of the advantage-service gRPC server (same models, same "
        "numbers).",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    json_executor = ThreadPoolExecutor(options.json_workers, thread_name_prefix="rest-json")
    app.state.context = RestContext(
        runtime,
        executor,
        metrics,
        options.max_body_bytes,
        options.state,
        options.admission or Admission(max_bytes=2**62),
        options.auth,
        json_executor,
    )
    app.mount("/docs/assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/debug/static", StaticFiles(directory=debug.STATIC), name="debug-static")
    _install_error_handlers(app)
    if options.auth is not None:
        _install_auth(app, options.auth)
    # Added last, so outermost: a cross-site request is refused before anything else runs.
    guard = RequestGuard(resolve_allowed_hosts(options.allowed_hosts, options.bind_host))
    app.add_middleware(GuardMiddleware, guard=guard)
    for router in (compute.router, models.router, health.router, docs.router, debug.router):
        app.include_router(router)
    schema.install_openapi(app, runtime)
    return app
