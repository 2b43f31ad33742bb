"""Typed errors raised anywhere in the service, and their one mapping to gRPC status codes.

Code below the servicer raises these; `service.servicer` turns them into statuses in one place,
so a user's mistake never surfaces as INTERNAL and a traceback never reaches a client.
"""

from __future__ import annotations

import grpc


class ServiceError(Exception):
    """Base class: an error with a gRPC status code and a message for the client."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(ServiceError):
    """A request field is malformed or inconsistent; the message names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(ServiceError):
    """The request names something the server does not hold (a model)."""

    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class FailedPrecondition(ServiceError):
    """The request is well-formed but needs something the model lacks (e.g. an actor network)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 412


class ResourceExhausted(ServiceError):
    """The request is over a server limit (message size, batch rows, queue length)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 413


class Unauthenticated(ServiceError):
    """The server requires a bearer token and the call carried none, or a wrong one."""

    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class Unavailable(ServiceError):
    """The server is draining and takes no new work."""

    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
