"""TLS and mutual TLS on the gRPC and REST ports, with certificates generated at test time."""

from __future__ import annotations

import ssl
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.cli import build_settings
from service.pb.advantage.v1 import advantage_pb2 as pb
from service.pb.advantage.v1 import advantage_pb2_grpc as pb_grpc
from service.settings import Settings
from tests.support.servers import RunningServer, running_server
from tests.support.tls_certs import Certificates, make_certificates

TOKEN = "tls-t0ken"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs: Certificates):
    settings = Settings(tls_cert=certs.server_cert, tls_key=certs.server_key, auth_token=TOKEN)
    with running_server(settings, rest=True) as server:
        yield server


@pytest.fixture(scope="module")
def mtls_server(certs: Certificates):
    settings = Settings(
        tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca
    )
    with running_server(settings, rest=True) as server:
        yield server


def https(server: RunningServer) -> str:
    return f"https://127.0.0.1:{server.rest_port}"


def channel_credentials(
    ca: Path, cert: Path | None = None, key: Path | None = None
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        ca.read_bytes(),
        key.read_bytes() if key else None,
        cert.read_bytes() if cert else None,
    )


def list_models(channel: grpc.Channel, token: str | None = TOKEN) -> pb.ListModelsResponse:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    api = pb_grpc.AdvantageServiceStub(channel)
    return api.ListModels(pb.ListModelsRequest(), metadata=metadata, timeout=20)


def grpc_failure(channel: grpc.Channel, token: str | None = TOKEN) -> grpc.RpcError:
    with channel, pytest.raises(grpc.RpcError) as caught:
        list_models(channel, token)
    return caught.value


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


# --- server TLS ------------------------------------------------------------------------------


def test_grpc_over_tls_with_the_right_ca_and_the_token(tls_server, certs) -> None:
    credentials = channel_credentials(certs.ca)
    with grpc.secure_channel(tls_server.target, credentials) as channel:
        assert list_models(channel).models
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    error = grpc_failure(grpc.secure_channel(tls_server.target, credentials), token=None)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED  # the token still counts over TLS


def test_grpc_refuses_plaintext_and_a_wrong_ca(tls_server, certs) -> None:
    plaintext = grpc_failure(grpc.insecure_channel(tls_server.target))
    assert plaintext.code() == grpc.StatusCode.UNAVAILABLE
    wrong_ca = channel_credentials(certs.other_ca)
    untrusted = grpc_failure(grpc.secure_channel(tls_server.target, wrong_ca))
    assert untrusted.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_checks_the_server_name(tls_server, certs) -> None:
    # The certificate names 127.0.0.1, ::1 and localhost, not "elsewhere.example".
    options = (("grpc.ssl_target_name_override", "elsewhere.example"),)
    channel = grpc.secure_channel(tls_server.target, channel_credentials(certs.ca), options)
    assert grpc_failure(channel).code() == grpc.StatusCode.UNAVAILABLE


def test_rest_over_tls(tls_server, certs) -> None:
    headers = {"authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=https(tls_server), verify=client_context(certs.ca)) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/v1/models").status_code == 401
        models = http.get("/v1/models", headers=headers)
        assert models.status_code == 200 and models.json()["models"]
    with pytest.raises(httpx.TransportError):  # plain HTTP to the TLS port
        httpx.get(f"http://127.0.0.1:{tls_server.rest_port}/healthz", timeout=10)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{https(tls_server)}/healthz", verify=client_context(certs.other_ca))


# --- mutual TLS ------------------------------------------------------------------------------


def test_grpc_mutual_tls_needs_a_client_certificate_from_the_ca(mtls_server, certs) -> None:
    with_cert = channel_credentials(certs.ca, certs.client_cert, certs.client_key)
    with grpc.secure_channel(mtls_server.target, with_cert) as channel:
        assert list_models(channel, token=None).models
    without = grpc_failure(grpc.secure_channel(mtls_server.target, channel_credentials(certs.ca)))
    assert without.code() == grpc.StatusCode.UNAVAILABLE
    stranger = channel_credentials(certs.ca, certs.other_client_cert, certs.other_client_key)
    refused = grpc_failure(grpc.secure_channel(mtls_server.target, stranger))
    assert refused.code() == grpc.StatusCode.UNAVAILABLE


def test_rest_mutual_tls_needs_a_client_certificate_from_the_ca(mtls_server, certs) -> None:
    url = f"{https(mtls_server)}/v1/models"
    context = client_context(certs.ca, certs.client_cert, certs.client_key)
    assert httpx.get(url, verify=context, timeout=10).status_code == 200
    for context in (
        client_context(certs.ca),
        client_context(certs.ca, certs.other_client_cert, certs.other_client_key),
    ):
        with pytest.raises(httpx.TransportError):
            httpx.get(url, verify=context, timeout=10)


# --- settings --------------------------------------------------------------------------------


def test_tls_settings_from_flags_and_their_errors(certs, tmp_path) -> None:
    flags = ["serve", "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
    settings = build_settings([*flags, "--tls-client-ca", str(certs.ca)])
    assert (settings.tls_cert, settings.tls_key, settings.tls_client_ca) == (
        certs.server_cert,
        certs.server_key,
        certs.ca,
    )
    with pytest.raises(ValueError, match="give both or neither"):
        build_settings(flags[:3])
    with pytest.raises(ValueError, match="needs tls_cert"):
        build_settings(["serve", "--tls-client-ca", str(certs.ca)])
    with pytest.raises(ValueError, match="do not load"):  # a key of another certificate
        build_settings([*flags[:3], "--tls-key", str(certs.client_key)])
    with pytest.raises(ValueError, match="cannot read"):
        build_settings([*flags[:3], "--tls-key", str(tmp_path / "missing.key")])
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate")
    with pytest.raises(ValueError, match="no PEM block"):
        build_settings([*flags, "--tls-client-ca", str(not_pem)])
