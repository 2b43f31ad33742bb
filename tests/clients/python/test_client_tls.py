"""The Python clients over TLS and mutual TLS (`credentials=`), with the read and admin tokens."""

from __future__ import annotations

import grpc
import pytest
from advantage_client import AdvantageClient, AdvantageServiceError, UnavailableError
from advantage_client.aio import AsyncAdvantageClient

from service.settings import Settings
from tests.support.servers import running_server
from tests.support.tls_certs import Certificates, make_certificates

READ, ADMIN = "client-read", "client-admin"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("client-certs"))


@pytest.fixture(scope="module")
def tls_target(certs: Certificates):
    settings = Settings(
        tls_cert=certs.server_cert, tls_key=certs.server_key, auth_token=READ, admin_token=ADMIN
    )
    with running_server(settings) as server:
        yield server.target


@pytest.fixture(scope="module")
def mtls_target(certs: Certificates):
    settings = Settings(
        tls_cert=certs.server_cert, tls_key=certs.server_key, tls_client_ca=certs.ca
    )
    with running_server(settings) as server:
        yield server.target


def tls(certs: Certificates, client_cert: bool = False) -> grpc.ChannelCredentials:
    if not client_cert:
        return grpc.ssl_channel_credentials(certs.ca.read_bytes())
    return grpc.ssl_channel_credentials(
        certs.ca.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )


def test_tls_with_the_read_token_reads_and_cannot_write(tls_target, certs) -> None:
    with AdvantageClient(tls_target, timeout=30, credentials=tls(certs), token=READ) as client:
        assert [model.name for model in client.list_models()] == ["demo"]
        version, params = client.get_parameters(prefixes="actor_network.")
        with pytest.raises(AdvantageServiceError) as refused:
            client.set_parameters(params, expected_version=version)
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    with AdvantageClient(tls_target, timeout=30, credentials=tls(certs), token=ADMIN) as admin:
        assert admin.set_parameters(params, expected_version=version) == version + 1


def refused(client: AdvantageClient) -> None:
    with client, pytest.raises(UnavailableError):
        client.list_models()


def test_plaintext_or_an_untrusted_ca_cannot_reach_a_tls_server(tls_target, certs) -> None:
    refused(AdvantageClient(tls_target, timeout=10, token=READ))
    wrong = grpc.ssl_channel_credentials(certs.other_ca.read_bytes())
    refused(AdvantageClient(tls_target, timeout=10, credentials=wrong, token=READ))


def test_mutual_tls_with_a_client_certificate(mtls_target, certs) -> None:
    with AdvantageClient(mtls_target, timeout=30, credentials=tls(certs, True)) as client:
        assert client.list_models()
    refused(AdvantageClient(mtls_target, timeout=10, credentials=tls(certs)))


async def test_async_client_over_mutual_tls(mtls_target, certs) -> None:
    credentials = tls(certs, client_cert=True)
    async with AsyncAdvantageClient(mtls_target, timeout=30, credentials=credentials) as client:
        assert [model.name for model in await client.list_models()] == ["demo"]
