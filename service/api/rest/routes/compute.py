"""POST /v1/advantage and /v1/loss: JSON → the gRPC request → the shared handler → JSON."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from google.protobuf.message import Message

from service.api import auth, handlers
from service.api.rest import schema
from service.api.rest.context import Context, RestContext, json_bytes, parse_json
from service.errors import ServiceError, Unavailable
from service.models.model import Model
from service.runtime import Runtime
from service.runtime.call import CallState
from service.wire import json as convert
from service.wire import json_dreamer as dreamer_json
from service.wire.json_fields import with_rest_names
from service.wire.requests import min_version

router = APIRouter(prefix="/v1", tags=["compute"])

Decode = Callable[[Any, Model], Message]
Handle = Callable[[Runtime, Any], Message]
Encode = Callable[[Any, Any, float], dict[str, Any]]


async def _compute(
    context: RestContext,
    request: Request,
    rpc: str,
    oneof: str,
    decode: Decode,
    handle: Handle,
    encode: Encode,
) -> Response:
    """Read the body; parse and convert it on REST's JSON pool; compute on the compute pool;
    write the JSON answer on the JSON pool again.

    Parsing a big body is seconds of Python: on the compute pool it would hold threads that
    gRPC requests (and other REST computations) wait for.
    """
    with context.metrics.track("rest", rpc=rpc, estimator="unknown") as call:
        if context.state() == "draining":
            raise Unavailable("server: draining, takes no new requests")
        data = await context.read_body(request)

        def read() -> tuple[Any, Model, Message, float]:
            started = time.perf_counter()
            body = parse_json(data)
            call.estimator = convert.estimator_name(body, oneof) or "unknown"
            name = body.get("model_name") if isinstance(body, dict) else None
            model = context.runtime.model(name if isinstance(name, str) else "")
            message = decode(body, model)
            return body, model, message, (time.perf_counter() - started) * 1e3

        def work() -> Message:
            """The shared handler; its errors name the fields as the body wrote them."""
            try:
                return handle(context.runtime, message)
            except ServiceError as error:
                raise with_rest_names(error, body, model) from error.__cause__

        body, model, message, json_ms = await context.in_json_worker(read)
        minimum = min_version(message)
        if minimum is not None:  # a replica waits for it here, on the loop (REST: at most 5 s)
            model = context.runtime.model(message.model_name)
            await context.runtime.wait_for_version(model, minimum, None)
        with context.admission.admit(len(data), CallState()):
            reply = await context.in_worker(work)
        content = await context.in_json_worker(lambda: json_bytes(encode(reply, body, json_ms)))
        call.done(reply)
        return Response(content, media_type="application/json")


def _advantage_json(reply: Any, body: Any, json_ms: float) -> dict[str, Any]:
    torchrl = bool(body.get("torchrl_shapes") or False)
    return convert.advantage_response_to_json(reply, torchrl, json_ms)


def _loss_json(reply: Any, body: Any, json_ms: float) -> dict[str, Any]:
    if reply.posterior_latents:  # DreamerV3's tensors as nested lists
        return dreamer_json.dreamer_response_to_json(reply)
    return convert.loss_response_to_json(reply)


def _loss_request(scope: auth.Scope) -> Decode:
    """ComputeLoss's request from JSON; `apply_update` needs the write scope (refused before
    any work, like gRPC's interceptor does)."""

    def decode(body: Any, model: Model) -> Message:
        if dreamer_json.dreamer_loss_name(body) is not None:
            message = dreamer_json.dreamer_request_from_json(body, model)
        else:
            message = convert.loss_request_from_json(body, model)
        if message.apply_update:
            auth.require_write(scope, "apply_update")
        return message

    return decode


@router.post("/advantage", summary="ComputeAdvantage", openapi_extra=schema.ADVANTAGE_OPENAPI)
async def compute_advantage(request: Request, context: Context) -> Response:
    """Advantage and value target of a batch of trajectories, as gRPC's ComputeAdvantage.

    The trajectory uses TorchRL's keys and layout, time last: per-step tensors (`next.reward`,
    `next.done`, values, log-probabilities) are [*B, T]; each model input (`observation`) is
    [*B, T, *obs_shape] with the shape and dtype GET /v1/models lists. Without `state_value` and
    `next.state_value` the server's value network computes them from the observations. Errors
    name the field as the body wrote it (`trajectory.next.done`, `estimator.gamma`).
    """
    return await _compute(
        context,
        request,
        "ComputeAdvantage",
        "estimator",
        convert.advantage_request_from_json,
        handlers.compute_advantage_handler,
        _advantage_json,
    )


@router.post("/loss", summary="ComputeLoss", openapi_extra=schema.LOSS_OPENAPI)
async def compute_loss(request: Request, context: Context) -> Response:
    """A TorchRL/DI-engine loss (and optionally one update step), as gRPC's ComputeLoss.

    The body is /v1/advantage's (the actor scores `action` given the observations, so both are
    needed) plus `loss`, `advantage`, `value_target`, `behaviour_distribution`, `apply_update`,
    `expected_parameter_version`. Without `apply_update` nothing changes on the server.
    """
    return await _compute(
        context,
        request,
        "ComputeLoss",
        "loss",
        _loss_request(auth.rest_scope(request)),
        handlers.compute_loss_handler,
        _loss_json,
    )
