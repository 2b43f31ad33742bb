"""Replication test helpers: bounded waits, health, parameters over the wire, a refusing server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import TypeVar

import grpc
import torch
from grpc_health.v1 import health as health_service
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.pb.advantage.v1 import advantage_pb2 as pb
from tests.support.wire import tensor

T = TypeVar("T")
SERVICE = "advantage.v1.AdvantageService"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_until(
    check: Callable[[], T], what: str, timeout: float = 60.0, interval: float = 0.02
) -> T:
    """Poll `check` until it returns something truthy (bounded by `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def health(target: str, timeout: float = 10.0) -> int:
    """The overall gRPC health status of the server at `target`."""
    with grpc.insecure_channel(target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout
        )
        return reply.status


def parameter_stream(
    tensors: dict[str, torch.Tensor], model: str = "demo"
) -> list[pb.ParameterChunk]:
    """A SetParameters stream of one chunk carrying every tensor (small models only)."""
    chunk = pb.ParameterChunk(model_name=model)
    for name, value in tensors.items():
        chunk.tensors.append(
            pb.NamedTensor(
                name=name, shape=list(value.shape), offset=0, data=tensor(value.reshape(-1))
            )
        )
    return [chunk]


def perturbed(tensors: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """`tensors` moved by a seeded random step (every version's numbers differ visibly)."""
    g = torch.Generator().manual_seed(seed)
    return {
        name: value + 0.05 * torch.randn(value.shape, generator=g, dtype=value.dtype)
        for name, value in tensors.items()
    }


def model_version(api, model: str = "demo") -> int:
    """The version GetModel reports."""
    return api.GetModel(pb.GetModelRequest(model_name=model), timeout=10).model.parameter_version


def metric(exposition: str, name: str) -> float:
    """The value of the sample `name` (with its labels, e.g. 'x{model="demo"}')."""
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} in:\n{exposition}")


def same_parameters(
    a: tuple[int, dict[str, torch.Tensor]], b: tuple[int, dict[str, torch.Tensor]]
) -> bool:
    """Whether two `tests.server.wire.parameters` answers have one version and equal tensors."""
    (version_a, tensors_a), (version_b, tensors_b) = a, b
    return (
        version_a == version_b
        and tensors_a.keys() == tensors_b.keys()
        and all(torch.equal(tensors_a[name], tensors_b[name]) for name in tensors_a)
    )


class RefusingServer:
    """A server that is SERVING by gRPC health but answers every AdvantageService call with
    UNAVAILABLE (as a replica without the version asked for does); counts the calls."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(4))

        def refuse(request: bytes, context: grpc.ServicerContext) -> bytes:
            with self._lock:
                self.calls += 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "refusing server: try another")

        handler = grpc.unary_unary_rpc_method_handler(refuse)  # raw bytes in and out
        methods = {name: handler for name in ("ComputeAdvantage", "ListModels", "GetModel")}
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, methods),)
        )
        checker = health_service.HealthServicer()
        checker.set("", health_pb2.HealthCheckResponse.SERVING)
        checker.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checker, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0).wait(30)


class BrokenStreamServer:
    """A SERVING server whose GetParameters replays `chunks` (serialised ParameterChunks of a
    real server) but, for its first `breaks` calls, sends the first chunk and then fails the
    stream with UNAVAILABLE: a server that goes away mid-stream. Counts the calls."""

    def __init__(self, chunks: list[bytes], breaks: int) -> None:
        self.calls = 0
        self._breaks = breaks
        self._lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(4))

        def replay(request: bytes, context: grpc.ServicerContext):
            with self._lock:
                self.calls += 1
                broken = self.calls <= self._breaks
            yield chunks[0]
            if broken:
                context.abort(grpc.StatusCode.UNAVAILABLE, "stream removed mid-way")
            yield from chunks[1:]

        handler = grpc.unary_stream_rpc_method_handler(replay)  # raw bytes in and out
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"GetParameters": handler}),)
        )
        checker = health_service.HealthServicer()
        checker.set("", health_pb2.HealthCheckResponse.SERVING)
        checker.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checker, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(0).wait(30)


def raw_parameter_chunks(target: str, max_chunk_bytes: int) -> list[bytes]:
    """The serialised ParameterChunks a real server streams for its default model."""
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_stream(
            f"/{SERVICE}/GetParameters",
            request_serializer=pb.GetParametersRequest.SerializeToString,
            response_deserializer=None,
        )
        return list(call(pb.GetParametersRequest(max_chunk_bytes=max_chunk_bytes), timeout=30))
