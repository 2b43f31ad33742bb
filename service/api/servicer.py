"""The gRPC servicer: thin handlers that decode, delegate, encode, and map errors in one place."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from typing import NoReturn, TypeVar

import grpc
from google.protobuf.message import Message

from service.api import handlers
from service.api.metrics import Metrics
from service.errors import InvalidArgument, ServiceError
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from service.runtime import Runtime
from service.wire.malformed import MalformedRequest
from service.wire.parameters import collect_parameter_stream

log = logging.getLogger(__name__)
Reply = TypeVar("Reply")
#: The full name of the service, for health and reflection.
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AdvantageService"].full_name


def _refusal(request: MalformedRequest) -> Callable[[], NoReturn]:
    def refuse() -> NoReturn:
        raise InvalidArgument(request.describe())

    return refuse


class AdvantageServicer(pb_grpc.AdvantageServiceServicer):
    """Implements advantage.v1.AdvantageService; compute runs on `executor`, not the loop."""

    def __init__(self, runtime: Runtime, executor: Executor, metrics: Metrics) -> None:
        self._runtime = runtime
        self._executor = executor
        self._metrics = metrics

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register this servicer on `server`."""
        pb_grpc.add_AdvantageServiceServicer_to_server(self, server)

    async def _run(
        self,
        context: grpc.aio.ServicerContext,
        work: Callable[[], Reply],
        request: Message | None = None,
    ) -> Reply:
        """Run `work` off the event loop, through `_guarded`."""
        if isinstance(request, MalformedRequest):  # bytes that do not parse: refuse, run nothing
            work, request = _refusal(request), None
        loop = asyncio.get_running_loop()
        return await self._guarded(context, loop.run_in_executor(self._executor, work), request)

    async def _guarded(
        self,
        context: grpc.aio.ServicerContext,
        work: Awaitable[Reply],
        request: Message | None = None,
    ) -> Reply:
        """Await `work`; turn every exception into a status (the one place).

        Also the one place gRPC metrics are recorded (RPC and estimator read from `request`;
        pass it, or they are labelled "unknown").
        """
        try:
            with self._metrics.track("grpc", request=request) as call:
                return call.done(await work)
        except ServiceError as error:
            await context.abort(error.code, error.message)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("internal error %s", incident)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error (incident {incident})")
        raise AssertionError("unreachable: context.abort raises")

    async def ComputeAdvantage(
        self, request: pb.ComputeAdvantageRequest, context: grpc.aio.ServicerContext
    ) -> pb.ComputeAdvantageResponse:
        return await self._run(
            context, lambda: handlers.compute_advantage_handler(self._runtime, request), request
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return await self._run(context, lambda: handlers.list_models(self._runtime), request)

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        return await self._run(context, lambda: handlers.get_model(self._runtime, request), request)

    async def ComputeLoss(
        self, request: pb.ComputeLossRequest, context: grpc.aio.ServicerContext
    ) -> pb.ComputeLossResponse:
        return await self._run(
            context, lambda: handlers.compute_loss_handler(self._runtime, request), request
        )

    async def GetParameters(
        self, request: pb.GetParametersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ParameterChunk]:
        chunks = await self._run(
            context, lambda: handlers.get_parameters(self._runtime, request), request
        )
        for chunk in chunks:
            yield chunk

    async def SetParameters(
        self,
        request_iterator: AsyncIterator[pb.ParameterChunk],
        context: grpc.aio.ServicerContext,
    ) -> pb.SetParametersResponse:
        async def collect_then_set() -> pb.SetParametersResponse:
            # Bounded while it arrives: a stream cannot grow past the model's own size.
            chunks = await collect_parameter_stream(request_iterator, self._runtime.model)
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: handlers.set_parameters_handler(self._runtime, chunks)
            )

        return await self._guarded(context, collect_then_set(), pb.ParameterChunk())
