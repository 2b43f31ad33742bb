"""The REST debug surface: a FastAPI app over the gRPC server's registry, executor and metrics.

Every compute route turns JSON into the protobuf request a gRPC client would send and calls the
shared handler in `service.handlers` on the server's worker pool, so numbers, validation and error
codes are the gRPC ones. Errors are JSON `{"code": "<gRPC code name>", "message": "..."}` with
the HTTP status of `service.errors` (400, 404, 412, 413, 503; 500 with an incident id).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from service import handlers
from service.auth import BearerToken
from service.errors import InvalidArgument, ResourceExhausted, ServiceError, Unavailable
from service.metrics import CONTENT_TYPE_LATEST, Metrics
from service.models.registry import ModelRegistry
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.rest import convert, schema
from service.rest.sample import MAX_SAMPLE_STEPS, sample_request

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
# Swagger UI 5 and ReDoc dist files, shipped by the `fastapi-offline` wheel (no CDN at run time).
DOCS_ASSETS = Path(str(resources.files("fastapi_offline") / "static"))
HTTP_CODES = {
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    413: "RESOURCE_EXHAUSTED",
}

# Server lifecycle as the REST surface sees it: "starting" (warm-up), "serving", "draining".
ServerState = Callable[[], str]


def error_response(code: str, message: str, status: int) -> JSONResponse:
    """The one error body: {"code": gRPC code name, "message": names the field}."""
    return JSONResponse({"code": code, "message": message}, status_code=status)


def service_error_response(error: ServiceError) -> JSONResponse:
    return error_response(error.code.name, error.message, error.http_status)


def internal_error_response() -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    log.exception("internal error %s", incident)
    return error_response("INTERNAL", f"internal error (incident {incident})", 500)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with RESOURCE_EXHAUSTED (413) past `limit` bytes."""
    declared = request.headers.get("content-length")
    over = f"over the server's limit of {limit} bytes (--max-message-mb)"
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ResourceExhausted(f"body: {declared} bytes, {over}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ResourceExhausted(f"body: more than {limit} bytes, {over}")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"body: not valid JSON ({error})") from None


def json_bytes(payload: Any) -> bytes:
    return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode()


def create_app(
    registry: ModelRegistry,
    executor: Executor,
    metrics: Metrics,
    max_body_bytes: int,
    state: ServerState = lambda: "serving",
    auth: BearerToken | None = None,
) -> FastAPI:
    """The REST app over a server's models, worker pool and metrics (/v1/ behind `auth`)."""
    app = FastAPI(
        title="advantage-service",
        summary="REST debug surface of the advantage-service gRPC server (same models, same "
        "numbers).",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/docs/assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    app.mount("/debug/static", StaticFiles(directory=STATIC), name="debug-static")

    if auth is not None:

        @app.middleware("http")
        async def require_token(request: Request, call_next: Callable[[Request], Any]) -> Any:
            if request.url.path.startswith("/v1/"):
                try:
                    auth.check(request.headers.get("authorization"))
                except ServiceError as error:
                    return service_error_response(error)
            return await call_next(request)

    async def in_worker(work: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(executor, work)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(error.status_code, "UNKNOWN")
        return error_response(code, str(error.detail), error.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return error_response("INVALID_ARGUMENT", f"{where}: {first['msg']}", 400)

    @app.post(
        "/v1/advantage",
        tags=["compute"],
        summary="ComputeAdvantage",
        openapi_extra=schema.ADVANTAGE_OPENAPI,
    )
    async def compute_advantage(request: Request) -> Response:
        """Advantage and value target of a batch of trajectories, as gRPC's ComputeAdvantage.

        The body uses TorchRL's keys; see the schema and `service/rest/convert.py`.
        """
        try:
            with metrics.track("rest", rpc="ComputeAdvantage", estimator="unknown") as call:
                if state() == "draining":
                    raise Unavailable("server: draining, takes no new requests")
                data = await read_body(request, max_body_bytes)

                def work() -> tuple[bytes, pb.ComputeAdvantageResponse]:
                    start = time.perf_counter()
                    body = parse_json(data)
                    call.estimator = convert.estimator_name(body) or "unknown"
                    name = body.get("model_name") if isinstance(body, dict) else None
                    model = registry.get(name if isinstance(name, str) else "")
                    message = convert.advantage_request_from_json(body, model)
                    json_ms = (time.perf_counter() - start) * 1e3
                    reply = handlers.compute_advantage_handler(registry, message)
                    torchrl = bool(body.get("torchrl_shapes", False))
                    payload = convert.advantage_response_to_json(reply, torchrl, json_ms)
                    return json_bytes(payload), reply

                content, reply = await in_worker(work)
                call.done(reply)
                return Response(content, media_type="application/json")
        except ServiceError as error:
            return service_error_response(error)
        except Exception:
            return internal_error_response()

    @app.post(
        "/v1/loss", tags=["compute"], summary="ComputeLoss", openapi_extra=schema.LOSS_OPENAPI
    )
    async def compute_loss(request: Request) -> Response:
        """A TorchRL/DI-engine loss (and optionally one update step), as gRPC's ComputeLoss.

        The body is /v1/advantage's plus `loss`, `advantage`, `value_target`,
        `behaviour_distribution`, `apply_update`, `expected_parameter_version`.
        """
        try:
            with metrics.track("rest", rpc="ComputeLoss", estimator="unknown") as call:
                if state() == "draining":
                    raise Unavailable("server: draining, takes no new requests")
                data = await read_body(request, max_body_bytes)

                def work() -> tuple[bytes, pb.ComputeLossResponse]:
                    body = parse_json(data)
                    call.estimator = convert.estimator_name(body, "loss") or "unknown"
                    name = body.get("model_name") if isinstance(body, dict) else None
                    model = registry.get(name if isinstance(name, str) else "")
                    message = convert.loss_request_from_json(body, model)
                    reply = handlers.compute_loss_handler(registry, message)
                    return json_bytes(convert.loss_response_to_json(reply)), reply

                content, reply = await in_worker(work)
                call.done(reply)
                return Response(content, media_type="application/json")
        except ServiceError as error:
            return service_error_response(error)
        except Exception:
            return internal_error_response()

    @app.get("/v1/models", tags=["models"], summary="ListModels")
    async def list_models() -> Response:
        """Every model the server holds, sorted by name (gRPC's ListModels)."""
        try:
            with metrics.track("rest", request=pb.ListModelsRequest()) as call:
                reply = call.done(await in_worker(lambda: handlers.list_models(registry)))
                return JSONResponse(convert.message_to_json(reply))
        except ServiceError as error:
            return service_error_response(error)
        except Exception:
            return internal_error_response()

    @app.get("/v1/models/{name}", tags=["models"], summary="GetModel")
    async def get_model(name: str) -> Response:
        """One model: inputs, action distribution, parameter version, defaults (gRPC's GetModel)."""
        message = pb.GetModelRequest(model_name=name)
        try:
            with metrics.track("rest", request=message) as call:
                reply = call.done(await in_worker(lambda: handlers.get_model(registry, message)))
                return JSONResponse(convert.message_to_json(reply))
        except ServiceError as error:
            return service_error_response(error)
        except Exception:
            return internal_error_response()

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        """Readiness: models loaded, kernels warmed up, not draining (503 otherwise)."""
        now = state()
        ready = now == "serving" and len(registry) > 0
        body = {"status": "ready" if ready else now, "models": [m.name for m in registry]}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", tags=["health"], response_class=Response)
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition of this server's metrics (gRPC and REST)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def docs_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - ReDoc",
            redoc_js_url="/docs/assets/redoc.standalone.js",
            redoc_favicon_url="/docs/assets/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/debug", include_in_schema=False)
    async def debug_page() -> FileResponse:
        return FileResponse(STATIC / "debug.html", media_type="text/html")

    @app.get("/debug/sample", tags=["debug"])
    async def debug_sample(model_name: str = "", steps: int = 24, seed: int = 0) -> Response:
        """A generated ComputeAdvantage body for a model: one trajectory of `steps` steps with a
        terminal end at round(0.3·steps) and a truncated one at round(0.65·steps)."""
        if not 1 <= steps <= MAX_SAMPLE_STEPS:
            return error_response(
                "INVALID_ARGUMENT", f"steps: expected 1 to {MAX_SAMPLE_STEPS}, got {steps}", 400
            )
        try:
            model = registry.get(model_name)
        except ServiceError as error:
            return service_error_response(error)
        body = await in_worker(lambda: json_bytes(sample_request(model, steps, seed)))
        return Response(body, media_type="application/json")

    return app
