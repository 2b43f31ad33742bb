"""Optional bearer-token authentication for the gRPC and REST surfaces.

With a token configured (ADVANTAGE_AUTH_TOKEN or --auth-token-file), every AdvantageService call
and every REST /v1/ route must carry `authorization: Bearer <token>`; health, reflection, metrics,
docs and the debug page itself stay open (probes and scrapers carry no token).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import grpc

from service.errors import Unauthenticated

PROTECTED_SERVICE = "/advantage.v1.AdvantageService/"


class BearerToken:
    """Checks `authorization` values against the configured token in constant time."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("auth token: expected a non-empty string")
        self._expected = f"Bearer {token}".encode()

    def check(self, authorization: str | None) -> None:
        """Raise `Unauthenticated` unless `authorization` is exactly "Bearer <token>"."""
        if authorization is None:
            raise Unauthenticated(
                "authorization: missing; this server requires 'authorization: Bearer <token>'"
            )
        if not hmac.compare_digest(authorization.encode(), self._expected):
            raise Unauthenticated("authorization: the bearer token is not valid")


def _refusal(handler: grpc.RpcMethodHandler, error: Unauthenticated) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind that only aborts with UNAUTHENTICATED."""

    async def abort(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(error.code, error.message)

    kinds = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }
    make = kinds[handler.request_streaming, handler.response_streaming]
    return make(
        abort,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses AdvantageService calls without the bearer token, before any work is done."""

    def __init__(self, token: BearerToken) -> None:
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(PROTECTED_SERVICE):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            self._token.check(metadata.get("authorization"))
        except Unauthenticated as error:
            return _refusal(handler, error)
        return handler
