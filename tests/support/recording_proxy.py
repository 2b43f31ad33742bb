"""A gRPC proxy for the golden-vector tests: it forwards every AdvantageService call, byte for byte,
to a real server and records each request message's bytes exactly as the client sent them.

The proxy never decodes: requests and responses pass through as raw bytes (identity
serialisers), and a failed upstream call is answered with the upstream's status and message. So
a client behind it sees the real server, and a test reads what the client put on the wire.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

from service.pb.advantage.v1 import advantage_pb2 as pb

SERVICE = "advantage.v1.AdvantageService"
_METHODS = pb.DESCRIPTOR.services_by_name["AdvantageService"].methods_by_name


def _identity(data: bytes) -> bytes:
    return data


class RecordingProxy:
    """Listens on 127.0.0.1:0, forwards to `upstream` ("host:port"), records requests."""

    def __init__(self, upstream: str) -> None:
        self._channel = grpc.insecure_channel(upstream)
        self._lock = threading.Lock()
        self._recorded: list[tuple[str, bytes]] = []
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)]
        )
        self._server.add_generic_rpc_handlers([_Handler(self)])
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def record(self, method: str, request: bytes) -> None:
        with self._lock:
            self._recorded.append((method, request))

    def requests(self, method: str) -> list[bytes]:
        """Every request sent to `method` ("ComputeAdvantage", ...) so far, in order."""
        with self._lock:
            return [data for name, data in self._recorded if name == method]

    def clear(self) -> None:
        with self._lock:
            self._recorded.clear()

    def upstream(self, method: str, kind: str) -> Callable[..., Any]:
        """The upstream callable of `method` with raw-bytes (de)serialisers."""
        factory = getattr(self._channel, kind)
        return factory(
            f"/{SERVICE}/{method}", request_serializer=_identity, response_deserializer=_identity
        )

    def stop(self) -> None:
        self._server.stop(0).wait()
        self._channel.close()

    def __enter__(self) -> RecordingProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def _forwarded_metadata(context: grpc.ServicerContext) -> list[tuple[str, str]]:
    return [(k, v) for k, v in context.invocation_metadata() if k == "authorization"]


def _abort(context: grpc.ServicerContext, error: grpc.RpcError) -> None:
    context.abort(error.code(), error.details() or "")


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: RecordingProxy) -> None:
        self._proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        service, _, method = details.method.lstrip("/").partition("/")
        if service != SERVICE or method not in _METHODS:
            return None
        proxy = self._proxy
        spec = _METHODS[method]
        if not spec.client_streaming and not spec.server_streaming:

            def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
                proxy.record(method, request)
                call = proxy.upstream(method, "unary_unary")
                try:
                    return call(
                        request, timeout=context.time_remaining(),
                        metadata=_forwarded_metadata(context),
                    )  # fmt: skip
                except grpc.RpcError as error:
                    _abort(context, error)
                    raise

            return grpc.unary_unary_rpc_method_handler(unary, _identity, _identity)
        if not spec.client_streaming:

            def server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
                proxy.record(method, request)
                call = proxy.upstream(method, "unary_stream")
                responses = call(request, metadata=_forwarded_metadata(context))
                context.add_callback(responses.cancel)
                try:
                    yield from responses
                except grpc.RpcError as error:
                    _abort(context, error)

            return grpc.unary_stream_rpc_method_handler(server_stream, _identity, _identity)
        if not spec.server_streaming:

            def client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
                def recorded() -> Iterator[bytes]:
                    for request in requests:
                        proxy.record(method, request)
                        yield request

                call = proxy.upstream(method, "stream_unary")
                try:
                    return call(recorded(), metadata=_forwarded_metadata(context))
                except grpc.RpcError as error:
                    _abort(context, error)
                    raise

            return grpc.stream_unary_rpc_method_handler(client_stream, _identity, _identity)
        return None
