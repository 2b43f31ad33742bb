"""POST /v1/advantage and /v1/loss: JSON → the gRPC request → the shared handler → JSON."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from google.protobuf.message import Message

from service.api import auth, handlers
from service.api.rest import schema
from service.api.rest.context import Context, RestContext, json_bytes, parse_json
from service.errors import Unavailable
from service.models.model import Model
from service.runtime import Runtime
from service.wire import json as convert

router = APIRouter(prefix="/v1", tags=["compute"])


async def _compute(
    context: RestContext,
    request: Request,
    rpc: str,
    oneof: str,
    work: Callable[[Any, Model, Runtime, Any], tuple[bytes, Message]],
) -> Response:
    """Read the body, then parse, convert, compute and encode on the worker pool."""
    with context.metrics.track("rest", rpc=rpc, estimator="unknown") as call:
        if context.state() == "draining":
            raise Unavailable("server: draining, takes no new requests")
        data = await context.read_body(request)

        def run() -> tuple[bytes, Message]:
            body = parse_json(data)
            call.estimator = convert.estimator_name(body, oneof) or "unknown"
            name = body.get("model_name") if isinstance(body, dict) else None
            model = context.runtime.model(name if isinstance(name, str) else "")
            return work(body, model, context.runtime, time.perf_counter())

        content, reply = await context.in_worker(run)
        call.done(reply)
        return Response(content, media_type="application/json")


def _advantage(body: Any, model: Model, runtime: Runtime, started: float) -> tuple[bytes, Message]:
    message = convert.advantage_request_from_json(body, model)
    json_ms = (time.perf_counter() - started) * 1e3
    reply = handlers.compute_advantage_handler(runtime, message)
    torchrl = bool(body.get("torchrl_shapes", False))
    return json_bytes(convert.advantage_response_to_json(reply, torchrl, json_ms)), reply


def _loss(
    body: Any, model: Model, runtime: Runtime, started: float, *, scope: auth.Scope
) -> tuple[bytes, Message]:
    message = convert.loss_request_from_json(body, model)
    if message.apply_update:
        auth.require_write(scope, "apply_update")
    reply = handlers.compute_loss_handler(runtime, message)
    return json_bytes(convert.loss_response_to_json(reply)), reply


@router.post("/advantage", summary="ComputeAdvantage", openapi_extra=schema.ADVANTAGE_OPENAPI)
async def compute_advantage(request: Request, context: Context) -> Response:
    """Advantage and value target of a batch of trajectories, as gRPC's ComputeAdvantage.

    The body uses TorchRL's keys; see the schema and `service/wire/json.py`.
    """
    return await _compute(context, request, "ComputeAdvantage", "estimator", _advantage)


@router.post("/loss", summary="ComputeLoss", openapi_extra=schema.LOSS_OPENAPI)
async def compute_loss(request: Request, context: Context) -> Response:
    """A TorchRL/DI-engine loss (and optionally one update step), as gRPC's ComputeLoss.

    The body is /v1/advantage's plus `loss`, `advantage`, `value_target`,
    `behaviour_distribution`, `apply_update`, `expected_parameter_version`.
    """
    loss = functools.partial(_loss, scope=auth.rest_scope(request))
    return await _compute(context, request, "ComputeLoss", "loss", loss)
