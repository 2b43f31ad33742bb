"""`python -m service.api.healthcheck`: exit 0 when the local server answers gRPC health SERVING.

The container images' HEALTHCHECK. It finds the server the way `advantage-service serve` was
told where to listen, reading only the settings it needs (host, port and the TLS files):

1. flags on its own command line (the same flags as `serve`: `--port 6000 --tls-cert …`);
2. else the flags of the server process: PID 1, or a child of PID 1 (`docker run --init`), when
   that is `advantage-service serve`, so `docker run IMAGE --port 6000` is checked on 6000;
3. else the `ADVANTAGE_*` variables (a HEALTHCHECK runs with the container's environment);
4. else the defaults of `service.settings.Settings`.

It never imports torch (nor `service.settings`, which does): a probe every 30 s then costs about
0.1 s and 35 MB instead of 2 s and 230 MB. A test keeps the names and defaults here in step with
`Settings`.

TLS (`--tls-cert`): the check trusts the server's own certificate file, so a self-signed
certificate and one from a private CA both work with nothing else mounted, and it checks the
certificate under a name the certificate holds (the address it dials when the certificate names
it, else its first DNS name, else its first IP address; `--server-name` overrides). Mutual TLS
(`--tls-client-ca`): it presents `--client-cert`/`--client-key` when given, else the server's
own certificate and key, which the server accepts only if the client CA signed that certificate
for client use too (extendedKeyUsage clientAuth, or none).

Exit status: 0 = SERVING; 1 = anything else (NOT_SERVING, unreachable, TLS refused), with one
line on stdout saying which (Docker keeps it in `docker inspect`'s health log).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ENV_PREFIX = "ADVANTAGE_"  # service.settings.ENV_PREFIX
#: The settings read here, with `Settings`' defaults (tests/deploy checks both against Settings).
SETTINGS: dict[str, str | None] = {
    "host": "[::]",
    "port": "50051",
    "tls_cert": None,
    "tls_key": None,
    "tls_client_ca": None,
}
#: Bind addresses meaning "every interface": the check dials loopback instead.
WILDCARDS = frozenset({"", "0.0.0.0", "::", "[::]"})
PROGRAM = "advantage-service"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m service.api.healthcheck",
        description="Exit 0 when the local advantage-service answers gRPC health SERVING.",
        allow_abbrev=False,  # `serve`'s other flags pass through: --rest-port is not --port
    )
    for name in SETTINGS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=None)
    parser.add_argument("--client-cert", help="mutual TLS: certificate to present")
    parser.add_argument("--client-key", help="mutual TLS: key of --client-cert")
    parser.add_argument("--server-name", help="name to check the server certificate against")
    parser.add_argument("--service", default="", help="health service name ('' = the server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    parser.add_argument(
        "--no-process",
        action="store_true",
        help="do not read the server process's flags (step 2 above)",
    )
    return parser


def server_process_args(proc: Path = Path("/proc")) -> list[str]:
    """The flags after `serve` of PID 1 or a child of PID 1, when it is `advantage-service
    serve` (a container's server); [] otherwise."""
    pids = ["1"]
    with contextlib.suppress(OSError):  # no such file: no children, or not Linux
        pids += (proc / "1" / "task" / "1" / "children").read_text().split()
    for pid in pids:
        try:
            argv = (proc / pid / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [word.decode(errors="replace") for word in argv if word]
        for index, word in enumerate(words[:-1]):
            program = Path(word).name == PROGRAM or word == "service.cli"
            if program and words[index + 1] == "serve":
                return words[index + 2 :]
    return []


def resolve(argv: Sequence[str], proc: Path | None = Path("/proc")) -> argparse.Namespace:
    """The check's options: each setting from own flags, else the server's, else env, else
    default (`proc=None` skips the server process)."""
    parser = _parser()
    own, _ = parser.parse_known_args(list(argv))
    inherited = argparse.Namespace()
    if proc is not None and not own.no_process:
        inherited, _ = parser.parse_known_args(server_process_args(proc))
    for name, default in SETTINGS.items():
        value = getattr(own, name)
        if value is None:
            value = getattr(inherited, name, None)
        if value is None:
            value = os.environ.get(ENV_PREFIX + name.upper()) or default
        setattr(own, name, value)
    return own


def dial_address(host: str, port: str) -> str:
    """The "host:port" to dial for a server bound to host:port (a wildcard → loopback)."""
    host = host.strip()
    if host in WILDCARDS:
        host = "127.0.0.1"
    host = host.strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def certificate_names(path: str | Path) -> list[str]:
    """The DNS names and IP addresses a PEM certificate holds (subjectAltName), in order."""
    try:
        # The stdlib's own certificate decoder (what getpeercert() returns), without a connection.
        decoded = ssl._ssl._test_decode_cert(str(path))  # type: ignore[attr-defined]
    except (AttributeError, OSError, ssl.SSLError, ValueError):
        return []
    names = []
    for kind, value in decoded.get("subjectAltName", ()):
        if kind in ("DNS", "IP Address"):
            names.append(value.strip())
    return names


def server_name(address_host: str, names: Sequence[str]) -> str | None:
    """The name to check the server's certificate against; None = the dialled host itself."""
    if address_host in names:
        return None
    dns = [name for name in names if any(c.isalpha() for c in name) and ":" not in name]
    if dns:
        # A wildcard certificate (*.example.com) matches any one label in the star's place.
        return dns[0].replace("*", "healthcheck", 1)
    return names[0] if names else None


def _read(path: str) -> bytes:
    return Path(path).read_bytes()


def channel(options: argparse.Namespace) -> grpc.Channel:
    """A channel to the local server: plaintext, TLS or mutual TLS as the settings say."""
    address = dial_address(options.host, options.port)
    if not options.tls_cert:
        return grpc.insecure_channel(address)
    key = cert = None
    if options.tls_client_ca:
        cert = _read(options.client_cert or options.tls_cert)
        key = _read(options.client_key or options.tls_key)
    credentials = grpc.ssl_channel_credentials(_read(options.tls_cert), key, cert)
    dialled = address.rpartition(":")[0].strip("[]")
    name = options.server_name or server_name(dialled, certificate_names(options.tls_cert))
    channel_options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(address, credentials, channel_options)


def check(options: argparse.Namespace) -> tuple[bool, str]:
    """(SERVING?, one line saying what the server answered)."""
    address = dial_address(options.host, options.port)
    try:
        with channel(options) as open_channel:
            stub = health_pb2_grpc.HealthStub(open_channel)
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=options.service), timeout=options.timeout
            )
    except grpc.RpcError as error:
        return False, f"{address}: {error.code().name}: {error.details()}"
    except OSError as error:  # a TLS file that cannot be read
        return False, f"{address}: {error}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{address}: {status}"


def main(argv: Sequence[str] | None = None, proc: Path | None = Path("/proc")) -> int:
    """Run the check; the exit status (0 = SERVING)."""
    healthy, line = check(resolve(sys.argv[1:] if argv is None else argv, proc))
    print(line, flush=True)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
