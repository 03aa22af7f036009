"""TLS options of the standalone server and the self-signed certificate it generates."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from airflow_provider_reclaim.receiver.server import (
    ServerConfigError,
    check_tls_options,
    format_base_url,
    is_loopback_host,
)
from airflow_provider_reclaim.receiver.tls import write_self_signed_certificate


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_hosts(host):
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "10.0.0.1", "192.168.1.20", "example.com", "localhost.example.com"]
)
def test_non_loopback_hosts(host):
    assert not is_loopback_host(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_plain_http_allowed_on_loopback(host):
    check_tls_options(host, certfile=None, keyfile=None, self_signed=False, insecure=False)


def test_plain_http_rejected_off_loopback():
    with pytest.raises(ServerConfigError) as raised:
        check_tls_options("0.0.0.0", certfile=None, keyfile=None, self_signed=False, insecure=False)

    message = str(raised.value)
    assert "'0.0.0.0'" in message
    assert "--self-signed" in message
    assert "--certfile" in message
    assert "--insecure" in message


def test_insecure_allows_plain_http_off_loopback():
    check_tls_options("0.0.0.0", certfile=None, keyfile=None, self_signed=False, insecure=True)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (
            {"certfile": "cert.pem", "keyfile": None, "self_signed": False, "insecure": False},
            "both --certfile and --keyfile",
        ),
        (
            {"certfile": None, "keyfile": "key.pem", "self_signed": False, "insecure": False},
            "both --certfile and --keyfile",
        ),
        ({"certfile": "cert.pem", "keyfile": "key.pem", "self_signed": True, "insecure": False}, "not both"),
        ({"certfile": None, "keyfile": None, "self_signed": True, "insecure": True}, "--insecure"),
    ],
)
def test_conflicting_tls_options(options, fragment):
    with pytest.raises(ServerConfigError, match=fragment):
        check_tls_options("127.0.0.1", **options)


def test_base_url_brackets_ipv6():
    assert format_base_url("https", "::1", 8443) == "https://[::1]:8443"
    assert format_base_url("https", "127.0.0.1", 8443) == "https://127.0.0.1:8443"


def test_self_signed_certificate_files(tmp_path):
    directory = tmp_path / "tls"

    paths = write_self_signed_certificate(directory, hosts=["localhost", "127.0.0.1", "::1"])

    assert directory.stat().st_mode & 0o777 == 0o700
    assert paths.keyfile.stat().st_mode & 0o777 == 0o600
    certificate = x509.load_pem_x509_certificate(paths.certfile.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in usages

    lifetime = certificate.not_valid_after_utc - datetime.now(timezone.utc)
    assert timedelta(days=29) < lifetime <= timedelta(days=30)

    # The pair loads as a server certificate, and the certificate works as a client's CA file.
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(paths.certfile, paths.keyfile)
    ssl.create_default_context(cafile=str(paths.certfile))


def test_self_signed_certificate_replaces_old_files(tmp_path):
    first = write_self_signed_certificate(tmp_path)
    first_certificate = first.certfile.read_bytes()

    second = write_self_signed_certificate(tmp_path)

    assert second.certfile == first.certfile
    assert second.certfile.read_bytes() != first_certificate
    assert second.keyfile.stat().st_mode & 0o777 == 0o600


def test_self_signed_certificate_needs_a_host(tmp_path):
    with pytest.raises(ValueError, match="at least one host"):
        write_self_signed_certificate(tmp_path, hosts=[])
