"""Exceptions raised by the client for failed RPCs, carrying the gRPC status code and message."""

from __future__ import annotations

import grpc

__all__ = [
    "AdvantageServiceError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "ResourceExhaustedError",
    "UnavailableError",
    "from_rpc_error",
]


class AdvantageServiceError(Exception):
    """An RPC failed. `code` is the gRPC status code, `message` the server's message (its details).

    Catch a subclass for one status (`InvalidArgumentError`, `NotFoundError`, ...) or this class
    and branch on `.code`.
    """

    #: Status code this subclass stands for (None on the base class: any code).
    CODE: grpc.StatusCode | None = None

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[grpc.StatusCode, str]]:
        return (type(self), (self.code, self.message))


class InvalidArgumentError(AdvantageServiceError, ValueError):
    """INVALID_ARGUMENT: a malformed or inconsistent request field; the message names it."""

    CODE = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(AdvantageServiceError, LookupError):
    """NOT_FOUND: unknown model."""

    CODE = grpc.StatusCode.NOT_FOUND


class FailedPreconditionError(AdvantageServiceError):
    """FAILED_PRECONDITION: the request needs something the model lacks."""

    CODE = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhaustedError(AdvantageServiceError):
    """RESOURCE_EXHAUSTED: a message over the size limit (the server's or this client's)."""

    CODE = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(AdvantageServiceError):
    """UNAVAILABLE: server unreachable or draining; usually worth retrying."""

    CODE = grpc.StatusCode.UNAVAILABLE


class UnauthenticatedError(AdvantageServiceError, PermissionError):
    """UNAUTHENTICATED: the server wants a bearer token (`token=`); none or a wrong one came."""

    CODE = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(AdvantageServiceError, PermissionError):
    """PERMISSION_DENIED: the token may read but not write (updates, SetParameters need the
    server's admin token)."""

    CODE = grpc.StatusCode.PERMISSION_DENIED


class DeadlineExceededError(AdvantageServiceError, TimeoutError):
    """DEADLINE_EXCEEDED: the call's `timeout` ran out (a write is then not applied)."""

    CODE = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(AdvantageServiceError):
    """CANCELLED: the call was cancelled (by the client, or by the server's shutdown)."""

    CODE = grpc.StatusCode.CANCELLED


_BY_CODE: dict[grpc.StatusCode, type[AdvantageServiceError]] = {
    cls.CODE: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        FailedPreconditionError,
        ResourceExhaustedError,
        UnauthenticatedError,
        PermissionDeniedError,
        UnavailableError,
        DeadlineExceededError,
        CancelledError,
    )
    if cls.CODE is not None
}


def from_rpc_error(error: grpc.RpcError) -> AdvantageServiceError:
    """Map a grpc.RpcError (sync or aio) to the matching AdvantageServiceError subclass."""
    code_fn = getattr(error, "code", None)
    details_fn = getattr(error, "details", None)
    code = code_fn() if callable(code_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    message = (details_fn() if callable(details_fn) else None) or str(error)
    return _BY_CODE.get(code, AdvantageServiceError)(code, message)
