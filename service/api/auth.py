"""Who may call: bearer tokens with a read and a write scope, and the server's TLS files.

Tokens (`authorization: Bearer <token>` on gRPC metadata and REST headers):

- **read token** (`--auth-token-file` / ADVANTAGE_AUTH_TOKEN): every AdvantageService call and
  every REST /v1/ route, and /debug/sample, must carry it (or the admin token).
- **admin token** (`--admin-token-file` / ADVANTAGE_ADMIN_TOKEN): with one set, writes (gRPC
  SetParameters and ComputeLoss with `apply_update`, REST /v1/loss with `apply_update`, and any
  future model loading: `WRITE_METHODS`) need it. A valid read token asking for a write is
  PERMISSION_DENIED (403), no or a wrong token UNAUTHENTICATED (401). The admin token also reads.
  With an admin token but no read token, reads are open and writes need the admin token.
- Read token only: as before, it allows everything (a warning at start-up says writes are not
  separately protected). No token: everything is open.

Health, reflection, /healthz, /readyz, /metrics, the docs and the /debug page stay open (probes
and scrapers carry no token). Tokens are compared in constant time.

TLS (`--tls-cert`, `--tls-key`, optionally `--tls-client-ca` for mutual TLS) covers both the
gRPC port and the REST port: `TlsFiles`.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from service.errors import PermissionDenied, ServiceError, Unauthenticated
from service.settings import Settings

log = logging.getLogger(__name__)

PROTECTED_SERVICE = "/advantage.v1.AdvantageService/"
# Every other AdvantageService RPC is a read (the read token suffices): ComputeAdvantage,
# ComputeLoss without apply_update, ListModels, GetModel, GetParameters, and WatchModels (the
# stream replicas follow their learner with).
#: RPCs that are writes whatever their request says (model loading belongs here too).
WRITE_METHODS = frozenset({PROTECTED_SERVICE + "SetParameters"})
#: RPCs that are writes when their request's `apply_update` is set.
UPDATE_METHODS = frozenset({PROTECTED_SERVICE + "ComputeLoss"})
#: REST paths outside /v1/ that need a token (the sample exposes a model's input layout).
PROTECTED_REST_PATHS = ("/debug/sample",)


class Scope(enum.Enum):
    """What a caller may do."""

    ANONYMOUS = "anonymous"  # no token, where reads are open (only an admin token is set)
    READ = "read"
    WRITE = "write"


class BearerToken:
    """The configured tokens: `check` turns an `authorization` value into the caller's scope.

    `BearerToken(token)` alone keeps the single-token behaviour (the token allows everything);
    `BearerToken(token, admin_token)` separates reads from writes.
    """

    def __init__(self, token: str | None, admin_token: str | None = None) -> None:
        if not token and not admin_token:
            raise ValueError("auth token: expected a non-empty string")
        if token and admin_token and token == admin_token:
            raise ValueError("admin token: must differ from the read token")
        self._read = f"Bearer {token}".encode() if token else None
        self._admin = f"Bearer {admin_token}".encode() if admin_token else None

    @property
    def writes_separated(self) -> bool:
        """Whether writes need a token of their own (the admin token)."""
        return self._admin is not None

    def check(self, authorization: str | None) -> Scope:
        """The scope `authorization` grants; `Unauthenticated` when it is wrong, or missing
        where reads need a token."""
        if authorization is None:
            if self._read is None:
                return Scope.ANONYMOUS
            raise Unauthenticated(
                "authorization: missing; this server requires 'authorization: Bearer <token>'"
            )
        given = authorization.encode()
        # Both comparisons always run, each in constant time.
        is_admin = self._admin is not None and hmac.compare_digest(given, self._admin)
        is_reader = self._read is not None and hmac.compare_digest(given, self._read)
        if is_admin:
            return Scope.WRITE
        if is_reader:
            return Scope.READ if self.writes_separated else Scope.WRITE
        raise Unauthenticated("authorization: the bearer token is not valid")


def require_write(scope: Scope, what: str = "this call") -> None:
    """Raise unless `scope` may write: PERMISSION_DENIED for a read token, UNAUTHENTICATED for
    no token. `what` names the write in the message ("apply_update")."""
    if scope is Scope.WRITE:
        return
    needs = f"{what} changes the model and needs the admin token"
    if scope is Scope.ANONYMOUS:
        raise Unauthenticated(f"authorization: missing; {needs}")
    raise PermissionDenied(f"authorization: this token may only read; {needs}")


def token_auth(settings: Settings) -> BearerToken | None:
    """The server's tokens (None: auth off), with start-up warnings about what they leave open."""
    if not settings.auth_token and not settings.admin_token:
        return None
    auth = BearerToken(settings.auth_token, settings.admin_token)
    if not auth.writes_separated:
        log.warning(
            "auth: one token guards reads and writes (apply_update, SetParameters); "
            "set --admin-token-file to protect writes separately"
        )
    elif not settings.auth_token:
        log.warning("auth: no read token (--auth-token-file): reads are open to anyone")
    if settings.tls_cert is None:
        log.warning("auth: no TLS (--tls-cert/--tls-key): tokens travel in clear text")
    return auth


# --- REST ----------------------------------------------------------------------------------


def rest_path_needs_token(path: str) -> bool:
    """Whether a REST path is behind the tokens: /v1/… and /debug/sample."""
    return path.startswith("/v1/") or any(
        path == p or path.startswith(p + "/") for p in PROTECTED_REST_PATHS
    )


def rest_scope(request: Any) -> Scope:
    """The caller's scope on a REST request (a starlette `Request`), as the auth middleware
    stored it; `Scope.WRITE` when the app has no auth, `Scope.ANONYMOUS` if the middleware did
    not run for this path (fails closed)."""
    if getattr(request.app.state, "auth", None) is None:
        return Scope.WRITE
    return getattr(request.state, "auth_scope", Scope.ANONYMOUS)


# --- gRPC ----------------------------------------------------------------------------------


def _abort_handler(handler: grpc.RpcMethodHandler, error: ServiceError) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind that only aborts with `error`'s status."""

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


def _writes_need(handler: grpc.RpcMethodHandler, scope: Scope) -> grpc.RpcMethodHandler:
    """The unary handler, refusing a request with `apply_update` unless `scope` may write: the
    check runs on the deserialised request, before the servicer does any work."""
    behaviour = handler.unary_unary

    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if getattr(request, "apply_update", False):  # a MalformedRequest has none: refused later
            try:
                require_write(scope, "apply_update")
            except ServiceError as error:
                await context.abort(error.code, error.message)
        return await behaviour(request, context)

    return handler._replace(unary_unary=guarded)


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses AdvantageService calls without a valid token, and writes without the write scope,
    before any work is done."""

    def __init__(self, token: BearerToken) -> None:
        self._token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(PROTECTED_SERVICE):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            scope = self._token.check(metadata.get("authorization"))
            if method in WRITE_METHODS:
                require_write(scope, method.removeprefix(PROTECTED_SERVICE))
        except ServiceError as error:
            return _abort_handler(handler, error)
        if method in UPDATE_METHODS and scope is not Scope.WRITE:
            if handler.unary_unary is None:  # every UPDATE_METHOD is unary; fail closed if not
                return _abort_handler(handler, PermissionDenied(f"{method}: not checkable"))
            return _writes_need(handler, scope)
        return handler


# --- TLS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """The server's certificate chain and key (PEM), and the CA of client certificates for
    mutual TLS (None: clients are not asked for one)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsFiles | None:
        """The TLS files the settings name (None: plaintext)."""
        if settings.tls_cert is None or settings.tls_key is None:
            return None
        return cls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """Credentials for `add_secure_port` (client certificates required with a client CA)."""
        client_ca = self.client_ca.read_bytes() if self.client_ca is not None else None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=client_ca,
            require_client_auth=client_ca is not None,
        )

    def uvicorn_options(self) -> dict[str, Any]:
        """`uvicorn.Config` keyword arguments serving the same certificate (and client CA)."""
        import ssl

        options: dict[str, Any] = {"ssl_certfile": str(self.cert), "ssl_keyfile": str(self.key)}
        if self.client_ca is not None:
            options["ssl_ca_certs"] = str(self.client_ca)
            options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
        return options
