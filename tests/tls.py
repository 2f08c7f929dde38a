"""Throw-away TLS certificates for test servers, made with the ``cryptography`` package.

Nothing here is committed: every run makes a fresh CA, a server certificate for 127.0.0.1
and a client certificate, in a temporary directory. A second, unrelated CA lets tests show
what a client that trusts the wrong CA sees.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.servers import HOST

# Long enough for any test run, short enough that a leaked file is useless soon.
VALIDITY = datetime.timedelta(days=2)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: a CA, a server certificate it signed, a client certificate it signed."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_options(self, *, auth_clients: bool) -> dict[str, str]:
        """redis-server options (without ``--``) that serve TLS with these files.

        The connections the server opens itself use TLS too and show the client certificate
        (the server certificate is for server authentication only): a replica's link to its
        master, and a sentinel's links to the servers it watches.
        """
        return {
            "tls-cert-file": str(self.server_cert),
            "tls-key-file": str(self.server_key),
            "tls-ca-cert-file": str(self.ca_cert),
            "tls-auth-clients": "yes" if auth_clients else "no",
            "tls-replication": "yes",
            "tls-client-cert-file": str(self.client_cert),
            "tls-client-key-file": str(self.client_key),
        }

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts the CA and shows the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context

    def client_options(self, *, with_cert: bool = False) -> dict[str, str]:
        """redis-py connection options for a ``rediss://`` host trusting the CA."""
        options = {"ssl_ca_certs": str(self.ca_cert)}
        if with_cert:
            options |= {"ssl_certfile": str(self.client_cert), "ssl_keyfile": str(self.client_key)}
        return options


def _name(common_name: str) -> x509.Name:
    """A subject or issuer name with one common name."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    """Write an unencrypted PEM key readable by its owner only."""
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _builder(
    subject: str, issuer: str, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    """A certificate builder valid from a minute ago (clock skew) for `VALIDITY`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + VALIDITY)
    )


def make_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate written to ``directory/name.crt``, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(name, name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key


def _issue(
    directory: Path,
    name: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: str,
    usage: x509.ObjectIdentifier,
) -> tuple[Path, Path]:
    """A leaf certificate for 127.0.0.1 signed by the CA; returns (certificate, key) paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(name, ca_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert_path, key_path


def make_tls_files(directory: Path) -> TlsFiles:
    """Make a CA and a server and a client certificate it signed, in ``directory``."""
    ca_name = "asgi-redis-test-ca"
    ca_cert, ca_key = make_ca(directory, ca_name)
    server_cert, server_key = _issue(
        directory, "server", ca_key, ca_name, ExtendedKeyUsageOID.SERVER_AUTH
    )
    client_cert, client_key = _issue(
        directory, "client", ca_key, ca_name, ExtendedKeyUsageOID.CLIENT_AUTH
    )
    return TlsFiles(ca_cert, server_cert, server_key, client_cert, client_key)
