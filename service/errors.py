"""Typed errors raised anywhere in the service, and their one mapping to gRPC and HTTP statuses.

Two families:

- `ArgumentError` is what the maths core (`service.estimators`, `service.losses`,
  `service.distributions`) raises: a `ValueError` (the public Python API is unchanged) that
  carries the argument's name and the detail, so the layer that bound the argument can name the
  request field without parsing message text.
- `ServiceError` subclasses carry a gRPC status code and an HTTP status; the transports turn
  them into statuses in one place each, so a user's mistake never surfaces as INTERNAL and a
  traceback never reaches a client.
"""

from __future__ import annotations

import grpc


class ArgumentError(ValueError):
    """An argument of a maths-core function is invalid: `argument` names it, `detail` says why.

    str(error) is "<argument>: <detail>", as the core's messages always read.
    """

    def __init__(self, argument: str, detail: str) -> None:
        super().__init__(f"{argument}: {detail}")
        self.argument = argument
        self.detail = detail


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

    @classmethod
    def from_argument(cls, error: ArgumentError, field: str) -> InvalidArgument:
        """The core's `error` about one argument, reported under the request `field` it came
        from."""
        return cls(f"{field}: {error.detail}")


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


class PermissionDenied(ServiceError):
    """The call carried a valid token that may not do this (a read token asking for a write)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class Unavailable(ServiceError):
    """The server is draining and takes no new work."""

    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class DeadlineExceeded(ServiceError):
    """The call's deadline passed before the work (or its commit) could be done."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class Cancelled(ServiceError):
    """The caller cancelled, or the server is shutting down; nothing was committed."""

    code = grpc.StatusCode.CANCELLED
    http_status = 499
