"""The gRPC servicer: thin methods that admit a request, run its shared handler on the compute
pool, and map errors to statuses in one place."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from functools import partial
from typing import NoReturn, TypeVar

import grpc
from google.protobuf.message import Message

from service.api import handlers
from service.api.admission import Admission
from service.api.inline import InlinePolicy, SmallRun, measured
from service.api.metrics import Metrics
from service.errors import InvalidArgument, ServiceError
from service.models.model import Model
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from service.runtime import Runtime
from service.runtime.call import CallState
from service.wire.advantage import largest_small_request
from service.wire.malformed import MalformedRequest
from service.wire.parameters import collect_parameter_stream
from service.wire.requests import min_version

log = logging.getLogger(__name__)
Reply = TypeVar("Reply")
#: The full name of the service, for health and reflection.
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["AdvantageService"].full_name
# A handler with its runtime and request bound: it takes the call's state.
Work = Callable[[CallState], Reply]


def _refusal(request: MalformedRequest) -> Work:
    def refuse(call: CallState) -> NoReturn:
        raise InvalidArgument(request.describe())

    return refuse


class AdvantageServicer(pb_grpc.AdvantageServiceServicer):
    """Implements advantage.v1.AdvantageService; compute runs on `executor`, not the loop."""

    def __init__(
        self,
        runtime: Runtime,
        executor: Executor,
        metrics: Metrics,
        admission: Admission,
        inline_max_bytes: int = 0,
    ) -> None:
        self._runtime = runtime
        self._executor = executor
        self._metrics = metrics
        self._admission = admission
        # ComputeAdvantage requests up to this size may run on the event loop (`_inline_claim`),
        # when the model's recent such requests were quick (`service.api.inline`).
        self._inline_max_bytes = inline_max_bytes
        self.inline = InlinePolicy()

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register this servicer on `server`."""
        pb_grpc.add_AdvantageServiceServicer_to_server(self, server)

    def _small_model(self, request: Message | None, nbytes: int) -> Model | None:
        """The model of a small ComputeAdvantage (≤ `inline_max_bytes`), the one kind of request
        that may run inline; None for any other request or an unknown model (the handler refuses
        it, on the pool as usual)."""
        if nbytes > self._inline_max_bytes or not isinstance(request, pb.ComputeAdvantageRequest):
            return None
        try:
            return self._runtime.model(request.model_name)
        except ServiceError:
            return None

    def _inline_claim(self, model: Model) -> Callable[[], None] | None:
        """Claims for running a small request of `model` on the event loop, taken without
        waiting; None when it must go to the compute pool. Returns the function that gives them
        back.

        A small ComputeAdvantage (≤ `inline_max_bytes`) computes in well under a millisecond:
        the hop to a worker thread and back (a queue, two wake-ups, the GIL passed twice) costs
        as much as the work. It runs inline only when that can never block the loop: nobody
        holds the model's lock now (an update in progress), and, when the model batches, its
        batcher is idle and claimed for this request (`Batcher.try_claim`), so the pass runs at
        once; and the model's recent small requests were quick, so a slow network never holds
        the loop (`service.api.inline`; measured at start-up, `measure_small_requests`). The lock is
        re-entrant: the handler takes it again.
        """
        # Small in bytes is not enough (a slow network): the model's recent small requests must
        # have been quick. The start-up measures the largest one (`measure_small_requests`);
        # where it could not, the model's first small request measures on the pool.
        if not self.inline.allows(model.name):
            return None
        if not model.lock.acquire(blocking=False):
            return None
        batcher = self._runtime.batcher(model)
        if batcher is None:
            return model.lock.release
        if not batcher.try_claim():
            model.lock.release()
            return None

        def release() -> None:
            batcher.release_claim()
            model.lock.release()

        return release

    def measure_small_requests(self) -> None:
        """Measure each model's largest small ComputeAdvantage (`largest_small_request`: the
        most observation rows `inline_max_bytes` can carry) through the handler, once, on the
        idle server at start-up, as if it had been served: small requests may then run inline
        from the first one. Without it the first requests all went to the pool, where waits for
        the GIL behind each other made every measurement slow, and on a busy server they stayed
        there (about a thousand requests with 32 callers)."""
        for model in self._runtime.registry:
            request = largest_small_request(model, self._inline_max_bytes)
            if request is None:
                continue
            runs: list[SmallRun] = []
            work = partial(handlers.compute_advantage_handler, self._runtime, request)
            try:
                measured(work, runs.append, pooled=False)()
            except Exception as error:  # a measurement never stops a start
                # Not readable yet (a replica), or a network that refuses zeros: the model's
                # first small request measures on the pool instead.
                log.info("model %r: small requests measured when served (%s)", model.name, error)
                continue
            # As if tried inline now: a model slow here waits INLINE_RETRY_S for a retry.
            self.inline.record(model.name, runs[0], tried_inline=True)

    async def _admitted(
        self,
        context: grpc.aio.ServicerContext,
        work: Work,
        nbytes: int,
        request: Message | None = None,
    ) -> Reply:
        """Admit `nbytes` of request, then run `work(call)` on the compute pool (or, for a small
        request whose model is free, right here: `_inline_claim`).

        `call` carries the deadline; when grpc.aio cancels this handler (the client cancelled,
        the deadline passed, the server's grace period ended) it is marked cancelled, so the
        worker thread stops at its next checkpoint and never commits a write.
        """
        call = CallState.with_timeout(context.time_remaining())
        with self._admission.admit(nbytes, call):
            counted = self._admission.working(lambda: work(call))
            model = self._small_model(request, nbytes)
            release = None if model is None else self._inline_claim(model)
            if model is not None and release is not None:
                try:
                    return self.inline.timed(counted, model.name, pooled=False)()
                finally:
                    release()
            if model is not None:
                counted = self.inline.timed(counted, model.name, pooled=True)
            try:
                return await asyncio.get_running_loop().run_in_executor(self._executor, counted)
            except asyncio.CancelledError:
                call.cancel()
                raise

    async def _run(
        self, context: grpc.aio.ServicerContext, handler: Callable[..., Reply], request: Message
    ) -> Reply:
        """A unary request through admission, the compute pool and `_guarded`."""
        if isinstance(request, MalformedRequest):  # bytes that do not parse: refuse, run nothing
            work, size, labelled = _refusal(request), 0, None
        else:
            work, size, labelled = (
                partial(handler, self._runtime, request),
                request.ByteSize(),
                request,
            )

        async def run() -> Reply:
            if (
                labelled is not None
                and "min_parameter_version" in labelled.DESCRIPTOR.fields_by_name
            ):
                await self._version(context, labelled)
            return await self._admitted(context, work, size, labelled)

        return await self._guarded(context, run(), labelled)

    async def _version(self, context: grpc.aio.ServicerContext, request: Message) -> None:
        """On a replica, wait on the event loop (no compute thread held) for the request's
        `min_parameter_version`; the handler then refuses it if it did not come."""
        minimum = min_version(request)
        if minimum is not None and self._runtime.replica is not None:
            model = self._runtime.model(request.model_name)  # type: ignore[attr-defined]
            await self._runtime.wait_for_version(model, minimum, context.time_remaining())

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
        return await self._run(context, handlers.compute_advantage_handler, request)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return await self._run(context, handlers.list_models, request)

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        return await self._run(context, handlers.get_model, request)

    async def ComputeLoss(
        self, request: pb.ComputeLossRequest, context: grpc.aio.ServicerContext
    ) -> pb.ComputeLossResponse:
        return await self._run(context, handlers.compute_loss_handler, request)

    async def GetParameters(
        self, request: pb.GetParametersRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ParameterChunk]:
        chunks = await self._run(context, handlers.get_parameters, request)
        for chunk in chunks:
            yield chunk

    async def SetParameters(
        self,
        request_iterator: AsyncIterator[pb.ParameterChunk],
        context: grpc.aio.ServicerContext,
    ) -> pb.SetParametersResponse:
        async def collect_then_set() -> pb.SetParametersResponse:
            self._runtime.refuse_write_on_replica("SetParameters")  # before reading the stream
            # Bounded while it arrives: a stream cannot grow past twice the model's size.
            chunks = await collect_parameter_stream(request_iterator, self._runtime.model)
            work = partial(handlers.set_parameters_handler, self._runtime, chunks)
            return await self._admitted(context, work, sum(c.ByteSize() for c in chunks))

        return await self._guarded(context, collect_then_set(), pb.ParameterChunk())

    async def WatchModels(
        self, request: pb.WatchModelsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ModelVersion]:
        # Long-lived: not admitted (it holds no request bytes) and not on the compute pool;
        # counted in the metrics when it ends.
        watch = None
        with self._metrics.track("grpc", rpc="WatchModels", estimator="none") as call:
            try:
                models = handlers.watched_models(self._runtime, request)
                watch = self._runtime.versions.watch(models)
                while changed := await watch.next():
                    for name, version in changed:
                        yield pb.ModelVersion(model_name=name, parameter_version=version)
            except ServiceError as error:
                call.code = error.code.name
                await context.abort(error.code, error.message)
            finally:
                if watch is not None:
                    self._runtime.versions.unwatch(watch)
