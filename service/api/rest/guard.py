"""Cross-site protection of the REST surface: which Host, which Origin, which content type.

A browser lets any web page send a "simple" POST (`Content-Type: text/plain`, no preflight) to
any address, including 127.0.0.1, and DNS rebinding lets a page read the answers of a server that
trusts whoever reaches it. So, before any route runs:

- **Host** must name an allowed host (`--rest-allowed-hosts`; default: the REST bind host,
  localhost, 127.0.0.1 and ::1). A rebinding page's requests carry its own domain as Host.
- **Origin**, when a browser sends one, must be this server's own origin: an allowed host at the
  port the request came to, with the request's scheme. A page served from anywhere else is
  refused, even from another port of localhost.
- **Writes** (any method but GET, HEAD, OPTIONS) must be `Content-Type: application/json`, which
  a cross-site page can only send after a CORS preflight this server never grants.

Host and Origin are refused with 403 PERMISSION_DENIED, a wrong content type with 415
(`code` INVALID_ARGUMENT), each with the JSON error body.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import grpc

from service.errors import InvalidArgument, ServiceError

#: Always allowed unless the allow-list is configured: the names of this machine's loopback.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Probes and the scraper: answered whatever the Host. Kubernetes' kubelet probes with the pod
#: IP as Host and Prometheus scrapes by address, neither of which the allow-list can know in
#: advance; these routes change nothing and show nothing a rebinding page could use (model
#: names, counters), so they stay open, as they stay open with auth on.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_MEDIA_TYPE = "application/json"
DEFAULT_PORTS = {"http": 80, "https": 443}


class PermissionDenied(ServiceError):
    """The request comes from, or through, somewhere this server does not answer."""

    code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class UnsupportedMediaType(InvalidArgument):
    """A write whose body is not declared as JSON."""

    http_status = 415


def host_name(name: str) -> str:
    """A host name as compared: lower case, no brackets around IPv6, no trailing dot."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name.removesuffix(".")


def resolve_allowed_hosts(
    configured: Iterable[str] | None, bind_host: str | None
) -> frozenset[str]:
    """The allow-list: `configured` (the setting) when given, else the bind host plus loopback.

    "*" in it allows any host.
    """
    if configured is not None:
        return frozenset(host_name(host) for host in configured)
    hosts = set(LOOPBACK_HOSTS)
    if bind_host:
        hosts.add(host_name(bind_host))
    return frozenset(hosts)


def split_host(value: str) -> tuple[str, int | None]:
    """A Host header's (name, port or None); ValueError when it is not `name[:port]`."""
    value = value.strip()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(value)
        port_text = rest[1:] if rest else None
    else:
        if value.count(":") > 1:  # an IPv6 address must be bracketed
            raise ValueError(value)
        name, colon, port_text = value.partition(":")
        port_text = port_text if colon else None
    if not name or any(c in name for c in "/@?#\\ "):
        raise ValueError(value)
    if port_text is None:
        return host_name(name), None
    if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
        raise ValueError(value)
    return host_name(name), int(port_text)


def _quoted(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:80] + "…")


class RequestGuard:
    """Checks one request's Host, Origin and content type (see the module docstring)."""

    def __init__(self, hosts: frozenset[str]) -> None:
        self.any_host = "*" in hosts
        self.hosts = hosts - {"*"}

    def describe(self) -> str:
        return ", ".join(sorted(self.hosts)) or "none"

    def check(self, method: str, path: str, scheme: str, headers: Mapping[str, str]) -> None:
        """Raise `PermissionDenied` or `UnsupportedMediaType` unless the request may proceed."""
        if path in OPEN_PATHS:
            return
        host, port = self._host(headers.get("host"))
        port = port if port is not None else DEFAULT_PORTS.get(scheme)
        origin = headers.get("origin")
        if origin is not None:
            self._origin(origin, scheme, host, port)
        if method.upper() not in SAFE_METHODS:
            declared = headers.get("content-type")
            media_type = (declared or "").split(";", 1)[0].strip().lower()
            if media_type != JSON_MEDIA_TYPE:
                got = "none" if declared is None else _quoted(declared)
                raise UnsupportedMediaType(
                    f"content-type: expected {JSON_MEDIA_TYPE} for a {method.upper()}, got {got}"
                )

    def _host(self, header: str | None) -> tuple[str, int | None]:
        if header is None:
            raise PermissionDenied("host: missing; the REST surface needs a Host header")
        try:
            name, port = split_host(header)
        except ValueError:
            raise PermissionDenied(f"host: {_quoted(header)} is not host[:port]") from None
        if not self.any_host and name not in self.hosts:
            raise PermissionDenied(
                f"host: {_quoted(name)} is not a host this server answers to (allowed: "
                f"{self.describe()}; see --rest-allowed-hosts)"
            )
        return name, port

    def _origin(self, origin: str, scheme: str, host: str, port: int | None) -> None:
        own = f"{scheme}://{f'[{host}]' if ':' in host else host}"
        if port is not None and port != DEFAULT_PORTS.get(scheme):
            own += f":{port}"
        refusal = PermissionDenied(
            f"origin: {_quoted(origin)} is not this server's origin ({own}); the REST surface "
            "refuses cross-site requests"
        )
        try:
            parts = urlsplit(origin.strip())
            origin_port = parts.port
        except ValueError:
            raise refusal from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path or parts.query:
            raise refusal
        origin_host = host_name(parts.hostname)
        if origin_port is None:
            origin_port = DEFAULT_PORTS[parts.scheme]
        same = (parts.scheme, origin_host, origin_port) == (scheme, host, port)
        if not same or not (self.any_host or origin_host in self.hosts):
            raise refusal
