"""Test certificates, generated at test time with `cryptography` (EC P-256, valid for a day).

`make_certificates(folder)` writes PEM files for a CA, a server certificate for 127.0.0.1, ::1
and localhost, a client certificate, and a second, unrelated CA with its own client certificate
(to show that certificates from elsewhere are refused). The TypeScript tests run it as
`python -m tests.support.tls_certs <folder>`.
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Certificates:
    """Paths of the PEM files `make_certificates` wrote."""

    ca: Path  # signed the server and client certificates
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # unrelated to the server
    other_client_cert: Path  # signed by other_ca
    other_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    usage: x509.ObjectIdentifier | None = None,
    names: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    is_ca = issuer is None
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer is not None else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        assert issuer is not None
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(
    folder: Path, name: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


def make_certificates(folder: Path) -> Certificates:
    """Write a CA, server and client certificates (and an unrelated CA) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("ca", "server", "client")}
    ca = _certificate("advantage-service test CA", keys["ca"], None, keys["ca"])
    server = _certificate(
        "localhost",
        keys["server"],
        ca,
        keys["ca"],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ],
    )
    client = _certificate(
        "trainer", keys["client"], ca, keys["ca"], usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    other_keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("ca", "client")}
    other_ca = _certificate("unrelated CA", other_keys["ca"], None, other_keys["ca"])
    other_client = _certificate(
        "stranger",
        other_keys["client"],
        other_ca,
        other_keys["ca"],
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    ca_path, _ = _write(folder, "ca", ca, keys["ca"])
    server_cert, server_key = _write(folder, "server", server, keys["server"])
    client_cert, client_key = _write(folder, "client", client, keys["client"])
    other_ca_path, _ = _write(folder, "other-ca", other_ca, other_keys["ca"])
    other_cert, other_key = _write(folder, "other-client", other_client, other_keys["client"])
    return Certificates(
        ca_path,
        server_cert,
        server_key,
        client_cert,
        client_key,
        other_ca_path,
        other_cert,
        other_key,
    )


if __name__ == "__main__":  # python -m tests.support.tls_certs <folder>
    make_certificates(Path(sys.argv[1]))
