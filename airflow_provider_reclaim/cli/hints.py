"""Short descriptions of delivery results, and hints on how to fix a failed delivery."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_reclaim.cli.common import (
    PROG,
)

# Explaining responses and errors
#
# The receiver's JSON error body is {"status": "rejected", "reason": "<code>"}. These hints
# name the likely cause of each code and the next step. {conn_id} is the last part of --url.
REASON_HINTS = {
    "missing_signature": "the receiver got no x-reclaim-signature-256 header, although send sets it: "
    "check that no proxy in between drops the header",
    "malformed_signature": "the receiver could not parse the x-reclaim-signature-256 header: "
    "check that no proxy in between changes the header",
    "signature_mismatch": "the signing secret differs from the password and the previous_secrets of "
    "connection {conn_id!r} on the receiver: sign with that connection's secret",
    "no_secret_configured": "connection {conn_id!r} on the receiver has no webhook secret: set its password",
    "unknown_connection": "the receiver has no reclaim_webhook connection {conn_id!r}: "
    "check the last part of the URL, or define the connection where the receiver runs",
    "connection_misconfigured": "connection {conn_id!r} on the receiver has invalid extras: "
    "fix them as the receiver's log describes",
    "body_too_large": "the body is larger than the max_body_bytes extra of connection {conn_id!r}: "
    "send a smaller body or raise max_body_bytes",
    "incomplete_body": "the receiver got fewer body bytes than Content-Length announced: "
    "check the network or proxy between send and the receiver",
    "body_timeout": "the receiver timed out while reading the body: "
    "check the network or proxy between send and the receiver",
    "inbox_unavailable": "the receiver cannot write to its inbox database: "
    "check the receiver's log and the inbox_url extra of connection {conn_id!r}",
}

# Maximum length of the "actual" table cell, in characters. Longer text is cut, and --json
# prints it whole.
MAX_CELL_CHARS = 60


def describe_response(result: Any) -> str:
    """Return the ``actual`` table text: status, JSON status and reason, or a short error."""
    if result.http_status is None:
        return f"error: {_describe_error(result.error or '')}"

    text = f"{result.http_status} {result.json_status or ''}".rstrip()
    reason = result.reason
    if reason:
        text += f" ({reason})"
    return text


def shorten_cell(text: str) -> str:
    if len(text) <= MAX_CELL_CHARS:
        return text
    return text[: MAX_CELL_CHARS - 3] + "..."


def _address(url: str) -> str:
    """Return ``host:port`` of ``url``, with the scheme's default port when the URL has none."""
    parts = urlsplit(url)
    default_port = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port or default_port
    except ValueError:
        return parts.netloc
    return f"{parts.hostname}:{port}"


def _conn_id_from_url(url: str) -> str:
    """Return the last part of the URL's path, which the receiver reads as the connection id."""
    return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]


def _classify_error(error: str) -> str | None:
    """Name the kind of a connection or TLS error from the text that the simulator stores.

    The simulator stores ``"<exception class>: <message>"`` from ``requests``. The markers are
    texts of OpenSSL 3 and of the operating system, checked on Linux. "actively refused" is the
    Windows wording of a refused connection.
    """
    if "CERTIFICATE_VERIFY_FAILED" in error:
        # OpenSSL reports "Hostname mismatch" or "IP address mismatch" for a certificate of
        # another host, and "self-signed certificate" or "unable to get local issuer" otherwise.
        return "host_mismatch" if "mismatch" in error else "untrusted_certificate"
    if "WRONG_VERSION_NUMBER" in error:
        return "not_tls"
    lowered = error.lower()
    if "connection refused" in lowered or "actively refused" in lowered:
        return "refused"
    if "Connection aborted" in error or "RemoteDisconnected" in error:
        return "closed"
    return None


_ERROR_SUMMARIES = {
    "host_mismatch": "certificate not valid for this host",
    "untrusted_certificate": "certificate not trusted",
    "not_tls": "server does not speak TLS",
    "refused": "connection refused",
    "closed": "connection closed without a response",
}


def _describe_error(error: str) -> str:
    """Return the exception class and a few words for a known error, else the whole text."""
    kind = _classify_error(error)
    if kind is None:
        return error
    exception_class = error.split(":", 1)[0]
    return f"{exception_class}, {_ERROR_SUMMARIES[kind]}"


def _error_hint(error: str, args: argparse.Namespace) -> str | None:
    kind = _classify_error(error)
    parts = urlsplit(args.url)
    address = _address(args.url)
    if kind == "host_mismatch":
        return (
            f"the server's certificate is not valid for {parts.hostname}: "
            "use a host name or address that the certificate names in --url"
        )
    if kind == "untrusted_certificate":
        if args.cacert is not None:
            return (
                f"the server's certificate is not signed by {args.cacert}: pass the certificate "
                "that this server logged at startup to --cacert"
            )
        return (
            "the server's certificate is not trusted: pass --cacert <cert-dir>/reclaim-receiver.crt "
            "(or --no-verify-tls for a throwaway test)"
        )
    if kind == "not_tls":
        return f"the server at {address} does not speak TLS: if it serves plain HTTP on loopback, use http://"
    if kind == "refused":
        return f"nothing listens at {address}: start the receiver, or correct the host and port in --url"
    if kind == "closed" and parts.scheme == "http":
        return f"the server at {address} did not answer plain HTTP: if it serves TLS, use https://"
    return None


def delivery_hint(result: Any, args: argparse.Namespace) -> str | None:
    """Return what probably caused a delivery's unexpected outcome and what to do, or None."""
    from airflow_provider_reclaim.simulator import Outcome

    if result.http_status is None:
        return _error_hint(result.error or "", args)

    reason = result.reason
    if reason in REASON_HINTS:
        return f"{result.http_status} {reason}: " + REASON_HINTS[reason].format(
            conn_id=_conn_id_from_url(args.url)
        )
    if result.http_status == 404 and result.json_status is None:
        # FastAPI's own 404, {"detail": "Not Found"}, has no status: no route matched the path.
        return "404 no receiver at this path: the URL must end with /reclaim/webhooks/<conn_id>"
    if (
        result.http_status == 200
        and result.json_status == "duplicate"
        and result.expected is Outcome.ACCEPTED
    ):
        if args.file:
            return (
                "200 duplicate: the receiver had already stored this event. To send it again on "
                "purpose, pass --expect duplicate or --expect any"
            )
        return (
            "200 duplicate: the receiver had already stored this event, probably from an earlier run "
            "of this scenario. Send the scenario to a connection with an empty inbox"
        )
    if result.http_status == 202 and result.json_status == "quarantined":
        return (
            "202 quarantined: the signature is valid, but the body is not a Scheduling Link event. "
            f"List it with: {PROG} inbox quarantine --conn-id {_conn_id_from_url(args.url)}"
        )
    return None
