"""Server interceptors: requests that are not even valid protobuf become INVALID_ARGUMENT.

grpc deserialises a request before the servicer runs and answers a DecodeError with UNKNOWN.
Wrapping the deserialiser hands the servicer a `MalformedRequest` instead, which it refuses
through its one error mapping.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from service.wire.malformed import MalformedRequest


def _tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    message_type = getattr(deserializer, "__qualname__", "message").removesuffix(".FromString")

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as error:
            return MalformedRequest(message_type, error)

    return deserialize


class MalformedRequestInterceptor(grpc.aio.ServerInterceptor):
    """Replaces each handler's request deserialiser with one that never raises."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
