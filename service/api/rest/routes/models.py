"""GET /v1/models and /v1/models/{name}: gRPC's ListModels and GetModel."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.api import handlers
from service.api.rest import schema
from service.api.rest.context import Context
from service.wire import json as convert
from service.wire.requests import get_model_request, list_models_request

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", summary="ListModels", openapi_extra=schema.models_openapi("ListModels"))
async def list_models(context: Context) -> Response:
    """Every model the server holds, sorted by name (gRPC's ListModels): its input keys with
    their per-step shapes and dtypes (a trajectory's `observation` is [*B, T, *shape]), its
    actor's action distribution, parameter version and estimator defaults. Dtypes and enums are
    spelled as requests spell them (`"float32"`, `"categorical"`)."""
    message = list_models_request()
    with context.metrics.track("rest", request=message) as call:
        reply = await context.in_worker(lambda: handlers.list_models(context.runtime, message))
        return JSONResponse(convert.message_to_json(call.done(reply)))


@router.get("/{name}", summary="GetModel", openapi_extra=schema.models_openapi("GetModel"))
async def get_model(name: str, context: Context) -> Response:
    """One model, as in GET /v1/models: inputs, action distribution, parameter version,
    defaults (gRPC's GetModel)."""
    message = get_model_request(name)
    with context.metrics.track("rest", request=message) as call:
        reply = await context.in_worker(lambda: handlers.get_model(context.runtime, message))
        return JSONResponse(convert.message_to_json(call.done(reply)))
