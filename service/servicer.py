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

from service import handlers
from service.errors import InvalidArgument, ServiceError
from service.interceptors import MalformedRequest
from service.metrics import Metrics
from service.models.registry import ModelRegistry
from service.parameters import collect_parameter_stream
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
Reply = TypeVar("Reply")


def _refusal(request: MalformedRequest) -> Callable[[], NoReturn]:
    def refuse() -> NoReturn:
        raise InvalidArgument(request.describe())

    return refuse


class AdvantageServicer(pb_grpc.AdvantageServiceServicer):
    """Implements advantage.v1.AdvantageService; compute runs on `executor`, not the loop."""

    def __init__(
        self, registry: ModelRegistry, executor: Executor, metrics: Metrics | None = None
    ) -> None:
        self._registry = registry
        self._executor = executor
        self._metrics = metrics or Metrics(registry)

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
            context, lambda: handlers.compute_advantage_handler(self._registry, request), request
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return await self._run(context, lambda: handlers.list_models(self._registry), request)

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        return await self._run(
            context, lambda: handlers.get_model(self._registry, request), request
        )

    async def ComputeLoss(
        self, request: pb.ComputeLossRequest, context: grpc.aio.ServicerContext
    ) -> pb.ComputeLossResponse:
        return await self._run(
            context, lambda: handlers.compute_loss_handler(self._registry, request), request
        )

    async def GetParameters(
        self, request: pb.GetParametersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ParameterChunk]:
        chunks = await self._run(
            context, lambda: handlers.get_parameters(self._registry, request), request
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
            chunks = await collect_parameter_stream(request_iterator, self._registry)
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: handlers.set_parameters_handler(self._registry, chunks)
            )

        return await self._guarded(context, collect_then_set(), pb.ParameterChunk())
