"""Self-signed TLS certificates for running the receiver on its own.

Reclaim only delivers to ``https`` endpoints, and a test or a local trial needs TLS without a
public certificate authority. The certificate written here is its own issuer, so a client
trusts it by passing the certificate file as its CA bundle (``requests.post(..., verify=path)``
or ``airflow-reclaim send --cacert path``).
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

log = logging.getLogger(__name__)

DEFAULT_HOSTS = ("localhost", "127.0.0.1")
"""Names and addresses a generated certificate is valid for when the caller names none."""

DEFAULT_VALIDITY_DAYS = 30

CERT_FILENAME = "reclaim-receiver.crt"
KEY_FILENAME = "reclaim-receiver.key"

# Clocks of client and server may differ by a little, so the certificate is valid from a few
# minutes before it was made.
_CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class CertificatePaths:
    """Files of a generated certificate.

    :param certfile: PEM certificate. Clients pass it as their CA bundle to trust the server.
    :param keyfile: PEM private key (PKCS #8, not encrypted), readable by its owner only.
    """

    certfile: Path
    keyfile: Path


def _subject_alternative_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def build_self_signed_certificate(
    hosts: Sequence[str] = DEFAULT_HOSTS,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Build a self-signed server certificate and its P-256 private key in memory.

    The certificate is marked as a CA and as a TLS server certificate, so that one file is both
    the server's certificate and the client's trust anchor.

    :param hosts: Host names and IP addresses (IPv4 or IPv6) the certificate is valid for.
    :param validity_days: Days the certificate stays valid, counted from now.
    :raises ValueError: ``hosts`` is empty or ``validity_days`` is less than 1.
    """
    if not hosts:
        raise ValueError("a certificate needs at least one host name or IP address")
    if validity_days < 1:
        raise ValueError(f"validity_days must be at least 1, got {validity_days}")

    key = ec.generate_private_key(ec.SECP256R1())
    public_key = key.public_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hosts[0][:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "airflow-provider-reclaim self-signed"),
        ]
    )
    now = datetime.now(timezone.utc)

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=validity_days))
        .add_extension(x509.SubjectAlternativeName(_subject_alternative_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return certificate, key


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file created with mode 0600, so it is never readable by others."""
    if path.exists():
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
    # The umask can only remove bits, but an explicit chmod documents the intent.
    path.chmod(0o600)


def write_self_signed_certificate(
    directory: str | os.PathLike[str],
    hosts: Sequence[str] = DEFAULT_HOSTS,
    validity_days: int = DEFAULT_VALIDITY_DAYS,
) -> CertificatePaths:
    """Generate a self-signed certificate and write it with its key to ``directory``.

    Existing files named ``reclaim-receiver.crt`` and ``reclaim-receiver.key`` in the directory
    are replaced. The directory is created with mode 0700 when it does not exist.

    :param directory: Directory for the two PEM files.
    :param hosts: Host names and IP addresses the certificate is valid for.
    :param validity_days: Days the certificate stays valid, counted from now.
    :return: The paths of the certificate and of the private key (mode 0600).
    :raises ValueError: ``hosts`` is empty or ``validity_days`` is less than 1.
    :raises OSError: The directory or the files cannot be written.
    """
    target = Path(directory).expanduser()
    target.mkdir(mode=0o700, parents=True, exist_ok=True)

    certificate, key = build_self_signed_certificate(hosts, validity_days)

    keyfile = target / KEY_FILENAME
    _write_private(
        keyfile,
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    certfile = target / CERT_FILENAME
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    log.info(
        "Wrote a self-signed certificate for %s, valid until %s: %s",
        ", ".join(hosts),
        certificate.not_valid_after_utc.isoformat(),
        certfile,
    )
    return CertificatePaths(certfile=certfile, keyfile=keyfile)
