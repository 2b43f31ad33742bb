"""Request handlers shared by the gRPC servicer and the REST surface: request message in,
response message out.

Each handler refuses fields it does not know, decodes with `service.wire`, does the work with
`service.runtime` and encodes the answer; it runs in a worker thread and raises
`service.errors.ServiceError`s, which each transport maps to a status in one place. `call` says
whether the caller still waits (deadline, cancellation); writes check it right before they commit.

On a replica (`runtime.replica`), writes are refused (FAILED_PRECONDITION naming the learner) and
reads of a model not copied yet are UNAVAILABLE. A read's `min_parameter_version` is checked
before the work and again on the version the answer used (`Runtime.readable`,
`Runtime.require_version`); the transports waited for it first on a replica.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from google.protobuf.message import Message

from service.errors import InvalidArgument, ResourceExhausted
from service.models.model import Model
from service.runtime import Runtime
from service.runtime.advantage import compute_advantage
from service.runtime.call import CallState
from service.runtime.dreamer import compute_dreamer_loss
from service.runtime.loss import compute_loss
from service.runtime.offpolicy import compute_offpolicy_loss
from service.wire import parameters
from service.wire.advantage import (
    decode_advantage_request,
    encode_advantage_response,
    response_bytes,
)
from service.wire.codec import decode_trajectory
from service.wire.dreamer import (
    decode_dreamer_request,
    encode_dreamer_response,
    is_dreamer_request,
)
from service.wire.loss import decode_loss_inputs, encode_loss_response
from service.wire.malformed import MalformedRequest
from service.wire.models import get_model_response, list_models_response
from service.wire.requests import min_version
from service.wire.unknown import refuse_unknown_fields


def list_models(
    runtime: Runtime, request: Message | None = None, call: CallState | None = None
) -> Message:
    """ListModels."""
    if request is not None:
        refuse_unknown_fields(request)
    return list_models_response(list(runtime.registry))


def get_model(runtime: Runtime, request: Message, call: CallState | None = None) -> Message:
    """GetModel."""
    refuse_unknown_fields(request)
    return get_model_response(runtime.model(request.model_name))


def compute_advantage_handler(
    runtime: Runtime, request: Message, call: CallState | None = None
) -> Message:
    """ComputeAdvantage: decode, run the networks and the estimator, encode."""
    start = time.perf_counter()
    refuse_unknown_fields(request)
    model = runtime.model(request.model_name)
    minimum = min_version(request)
    runtime.readable(model, minimum)
    trajectory, spec = decode_advantage_request(request, model)
    limit = runtime.max_message_bytes
    predicted = response_bytes(trajectory)
    if limit is not None and predicted > limit:  # refuse before computing, not after
        raise ResourceExhausted(
            f"response: would be about {predicted} bytes for trajectory.reward's "
            f"{list(trajectory.batch_shape)}, over the server's limit of {limit} bytes "
            "(--max-message-mb); split the batch"
        )
    decoded = time.perf_counter()
    result = compute_advantage(model, trajectory, spec, runtime.batcher(model), call)
    runtime.require_version(model, result.parameter_version, minimum)
    return encode_advantage_response(
        model,
        result,
        (decoded - start) * 1e3,
        encode_started=time.perf_counter(),
        n_agents=trajectory.n_agents,
    )


def compute_loss_handler(
    runtime: Runtime, request: Message, call: CallState | None = None
) -> Message:
    """ComputeLoss: decode, evaluate the loss (and update), encode."""
    start = time.perf_counter()
    refuse_unknown_fields(request)
    if request.apply_update:
        runtime.refuse_write_on_replica("apply_update")
    model = runtime.model(request.model_name)
    runtime.readable(model, min_version(request))
    if is_dreamer_request(request):
        return _compute_dreamer_loss(runtime, model, request, call, start)
    trajectory = decode_trajectory(request.trajectory)
    inputs = decode_loss_inputs(request, model, trajectory)
    decoded = time.perf_counter()
    work = compute_offpolicy_loss if inputs.loss.kind.layout == "transitions" else compute_loss
    result = work(model, trajectory, inputs, call, runtime.learner)
    return encode_loss_response(model, result, (decoded - start) * 1e3)


def _compute_dreamer_loss(
    runtime: Runtime, model: Model, request: Message, call: CallState | None, start: float
) -> Message:
    """ComputeLoss for a DreamerV3 loss (`service.runtime.dreamer`)."""
    inputs = decode_dreamer_request(request, model)
    decoded = time.perf_counter()
    result = compute_dreamer_loss(
        model, inputs, call, runtime.learner, runtime.max_imagination_steps
    )
    return encode_dreamer_response(model, result, (decoded - start) * 1e3)


def get_parameters(
    runtime: Runtime, request: Message, call: CallState | None = None
) -> list[Message]:
    """GetParameters: the whole stream, one consistent snapshot."""
    refuse_unknown_fields(request)
    model = runtime.model(request.model_name)
    minimum = min_version(request)
    runtime.readable(model, minimum)
    chunks = list(parameters.parameter_chunks(model, request.max_chunk_bytes, request.prefixes))
    runtime.require_version(model, chunks[0].parameter_version, minimum)
    return chunks


def set_parameters_handler(
    runtime: Runtime, chunks: Iterable[Message], call: CallState | None = None
) -> Message:
    """SetParameters: all or nothing (the chunks were checked for unknown fields on arrival)."""
    runtime.refuse_write_on_replica("SetParameters")
    return parameters.set_parameters(runtime.model, chunks, call)


def watched_models(runtime: Runtime, request: Message) -> list[Model]:
    """WatchModels: the models the request names (every model when it names none)."""
    if isinstance(request, MalformedRequest):
        raise InvalidArgument(request.describe())
    refuse_unknown_fields(request)
    if not request.model_names:
        return list(runtime.registry)
    return [runtime.model(name) for name in request.model_names]
