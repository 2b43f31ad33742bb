"""`python -m service.api.healthcheck` (the images' HEALTHCHECK) against real servers:
plaintext, TLS with a certificate that names neither localhost nor 127.0.0.1, mutual TLS."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from grpc_health.v1 import health_pb2

from service.api import healthcheck
from service.settings import ENV_PREFIX, Settings, flag
from tests.support.deploy import ROOT
from tests.support.servers import RunningServer, running_server
from tests.support.tls_certs import Certificates, _certificate, _write, make_certificates

SERVER_NAME = "advantage.internal"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The health check as Docker runs it: its own process, the container's variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    clean["PYTHONPATH"] = os.pathsep.join([str(ROOT), clean.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "service.api.healthcheck", "--no-process", *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def named_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed-CA server certificate for advantage.internal only (as for a Service name)."""
    folder = tmp_path_factory.mktemp("named")
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("private CA", ca_key, None, ca_key)
    server = _certificate(
        SERVER_NAME,
        key,
        ca,
        ca_key,
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[x509.DNSName(SERVER_NAME)],
    )
    _write(folder, "ca", ca, ca_key)
    return _write(folder, "server", server, key)


@pytest.fixture(scope="module")
def tls_server(named_cert: tuple[Path, Path]) -> Iterator[RunningServer]:
    cert, key = named_cert
    with running_server(Settings(tls_cert=cert, tls_key=key)) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(certs: Certificates) -> Iterator[RunningServer]:
    settings = Settings(
        tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca
    )
    with running_server(settings) as server:
        yield server


def test_a_serving_server_is_healthy(demo_server: RunningServer) -> None:
    done = _run("--host", "127.0.0.1", "--port", str(demo_server.port))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == f"127.0.0.1:{demo_server.port}: SERVING"


def test_the_address_comes_from_the_variables(demo_server: RunningServer) -> None:
    # the image sets ADVANTAGE_HOST=0.0.0.0: the check dials loopback
    env = {f"{ENV_PREFIX}HOST": "0.0.0.0", f"{ENV_PREFIX}PORT": str(demo_server.port)}
    done = _run(env=env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_nothing_listening_is_unhealthy() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _run("--port", str(port), "--host", "127.0.0.1", "--timeout", "2")
    assert done.returncode == 1
    assert "UNAVAILABLE" in done.stdout


def test_tls_trusts_the_servers_own_certificate_under_the_name_it_holds(
    tls_server: RunningServer, named_cert: tuple[Path, Path]
) -> None:
    cert, key = named_cert
    assert healthcheck.certificate_names(cert) == [SERVER_NAME]
    env = {
        f"{ENV_PREFIX}PORT": str(tls_server.port),
        f"{ENV_PREFIX}TLS_CERT": str(cert),
        f"{ENV_PREFIX}TLS_KEY": str(key),
    }
    done = _run(env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # the same server asked in plaintext, or checked under another name, is not healthy
    assert _run("--port", str(tls_server.port)).returncode == 1
    wrong_name = _run("--server-name", "elsewhere.example", "--timeout", "2", env=env)
    assert wrong_name.returncode == 1


def test_not_serving_is_unhealthy(tls_server: RunningServer, named_cert: tuple[Path, Path]) -> None:
    cert, key = named_cert
    args = ("--port", str(tls_server.port), "--tls-cert", str(cert), "--tls-key", str(key))
    assert tls_server.server is not None
    health = tls_server.server.health
    tls_server.call(health.set("", health_pb2.HealthCheckResponse.NOT_SERVING))
    try:
        done = _run(*args)
    finally:
        tls_server.call(health.set("", health_pb2.HealthCheckResponse.SERVING))
    assert done.returncode == 1
    assert done.stdout.strip().endswith(": NOT_SERVING")
    assert _run(*args).returncode == 0


def test_mutual_tls_presents_a_client_certificate(
    mtls_server: RunningServer, certs: Certificates
) -> None:
    server = (
        "--port",
        str(mtls_server.port),
        "--tls-cert",
        str(certs.server_cert),
        "--tls-key",
        str(certs.server_key),
        "--tls-client-ca",
        str(certs.ca),
    )
    client = ("--client-cert", str(certs.client_cert), "--client-key", str(certs.client_key))
    done = _run(*server, *client)
    assert done.returncode == 0, done.stdout + done.stderr
    # by default it presents the server's certificate, which this CA issued for servers only
    refused = _run(*server, "--timeout", "2")
    assert refused.returncode == 1
    assert "UNAVAILABLE" in refused.stdout


def _fake_proc(root: Path, pid: str, argv: list[str], children: str | None = None) -> Path:
    (root / pid).mkdir(parents=True)
    (root / pid / "cmdline").write_bytes(b"\0".join(word.encode() for word in argv) + b"\0")
    if children is not None:
        (root / "1" / "task" / "1").mkdir(parents=True)
        (root / "1" / "task" / "1" / "children").write_text(children)
    return root


def test_it_reads_the_flags_the_server_process_was_started_with(
    demo_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(f"{ENV_PREFIX}PORT", raising=False)
    # `docker run IMAGE --port N`: PID 1 is the entry point with the flags after the image
    flags = ["--host", "127.0.0.1", "--port", str(demo_server.port), "--workers", "2"]
    entry_point = ["/opt/venv/bin/python", "/opt/venv/bin/advantage-service", "serve"]
    proc = _fake_proc(tmp_path / "a", "1", [*entry_point, *flags])
    assert healthcheck.server_process_args(proc) == flags
    assert healthcheck.main([], proc) == 0
    # `docker run --init`: PID 1 is the init process, the server its child
    init = _fake_proc(tmp_path / "b", "1", ["/sbin/docker-init", "--", "sleep"], children="7 ")
    _fake_proc(init, "7", ["advantage-service", "serve", *flags])
    assert healthcheck.server_process_args(init) == flags
    # anything else: nothing inherited
    other = _fake_proc(tmp_path / "c", "1", ["/bin/sh", "-c", "advantage-service export-model"])
    assert healthcheck.server_process_args(other) == []


def test_own_flags_win_over_the_servers_then_variables_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in healthcheck.SETTINGS:
        monkeypatch.delenv(f"{ENV_PREFIX}{name.upper()}", raising=False)
    serve = ["advantage-service", "serve", "--rest-port", "9", "--port=7001", "--batching"]
    proc = _fake_proc(tmp_path, "1", serve)
    assert healthcheck.resolve([], proc).port == "7001"  # --rest-port is not --port
    assert healthcheck.resolve(["--port", "7002"], proc).port == "7002"
    monkeypatch.setenv(f"{ENV_PREFIX}PORT", "7003")
    monkeypatch.setenv(f"{ENV_PREFIX}HOST", "::1")
    assert healthcheck.resolve([], proc).port == "7001"
    options = healthcheck.resolve([], None)
    assert (options.port, options.host) == ("7003", "::1")
    assert healthcheck.dial_address(options.host, options.port) == "[::1]:7003"
    monkeypatch.delenv(f"{ENV_PREFIX}PORT")
    assert healthcheck.resolve(["--no-process"], proc).port == "50051"


def test_it_reads_the_settings_names_and_defaults_of_the_server() -> None:
    assert healthcheck.ENV_PREFIX == ENV_PREFIX
    for name, default in healthcheck.SETTINGS.items():
        info = Settings.model_fields[name]
        assert default == (None if info.default is None else str(info.default)), name
        assert flag(name) == "--" + name.replace("_", "-")


def test_it_never_imports_torch() -> None:
    code = "import sys, service.api.healthcheck; sys.exit('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0


@pytest.mark.parametrize(
    ("dialled", "names", "expected"),
    [
        ("127.0.0.1", ["localhost", "127.0.0.1"], None),
        ("127.0.0.1", ["advantage-learner", "advantage-learner.ns.svc"], "advantage-learner"),
        ("127.0.0.1", ["*.advantage.internal"], "healthcheck.advantage.internal"),
        ("127.0.0.1", ["10.0.0.7"], "10.0.0.7"),
        ("127.0.0.1", [], None),
    ],
)
def test_the_name_the_certificate_is_checked_under(
    dialled: str, names: list[str], expected: str | None
) -> None:
    assert healthcheck.server_name(dialled, names) == expected


def test_wildcard_binds_are_dialled_on_loopback() -> None:
    for host in ("0.0.0.0", "[::]", "::", ""):
        assert healthcheck.dial_address(host, "50051") == "127.0.0.1:50051"
    assert healthcheck.dial_address("10.1.2.3", "1") == "10.1.2.3:1"
