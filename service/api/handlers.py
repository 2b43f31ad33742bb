"""Request handlers shared by the gRPC servicer and the REST surface: request message in,
response message out.

Each handler decodes with `service.wire`, does the work with `service.runtime` and encodes the
answer; it runs in a worker thread and raises `service.errors.ServiceError`s, which each
transport maps to a status in one place.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from google.protobuf.message import Message

from service.runtime import Runtime
from service.runtime.advantage import compute_advantage
from service.runtime.loss import compute_loss
from service.wire import parameters
from service.wire.advantage import decode_advantage_request, encode_advantage_response
from service.wire.codec import decode_trajectory
from service.wire.loss import decode_loss_inputs, encode_loss_response
from service.wire.models import get_model_response, list_models_response


def list_models(runtime: Runtime, request: Message | None = None) -> Message:
    """ListModels."""
    return list_models_response(list(runtime.registry))


def get_model(runtime: Runtime, request: Message) -> Message:
    """GetModel."""
    return get_model_response(runtime.model(request.model_name))


def compute_advantage_handler(runtime: Runtime, request: Message) -> Message:
    """ComputeAdvantage: decode, run the networks and the estimator, encode."""
    start = time.perf_counter()
    model = runtime.model(request.model_name)
    trajectory, spec = decode_advantage_request(request, model)
    decoded = time.perf_counter()
    result = compute_advantage(model, trajectory, spec, runtime.batcher(model))
    return encode_advantage_response(
        model, result, (decoded - start) * 1e3, encode_started=time.perf_counter()
    )


def compute_loss_handler(runtime: Runtime, request: Message) -> Message:
    """ComputeLoss: decode, evaluate the loss (and update), encode."""
    start = time.perf_counter()
    model = runtime.model(request.model_name)
    trajectory = decode_trajectory(request.trajectory)
    inputs = decode_loss_inputs(request, model, trajectory)
    decoded = time.perf_counter()
    result = compute_loss(model, trajectory, inputs)
    return encode_loss_response(model, result, (decoded - start) * 1e3)


def get_parameters(runtime: Runtime, request: Message) -> list[Message]:
    """GetParameters: the whole stream, one consistent snapshot."""
    model = runtime.model(request.model_name)
    return list(parameters.parameter_chunks(model, request.max_chunk_bytes, request.prefixes))


def set_parameters_handler(runtime: Runtime, chunks: Iterable[Message]) -> Message:
    """SetParameters: all or nothing."""
    return parameters.set_parameters(runtime.model, chunks)
