"""The ``airflow-reclaim send`` subcommand: sign bodies like Reclaim and POST them to a receiver."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_reclaim.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXPECT_ANY,
    EXPECT_AUTO,
    PROG,
    CliError,
    UsageError,
    add_common_options,
    load_connection_settings,
    non_negative_float,
    non_negative_int,
    print_json,
    print_table,
)

log = logging.getLogger(__name__)


def _read_secret(args: argparse.Namespace) -> str:
    if args.secret is not None:
        if not args.secret:
            raise UsageError("--secret is empty")
        return args.secret

    if args.secret_env is not None:
        value = os.environ.get(args.secret_env, "")
        if not value:
            raise UsageError(
                f"environment variable {args.secret_env} is not set or empty: export the webhook secret in it"
            )
        return value

    settings = load_connection_settings(args.conn_id, args.log_level)
    if not settings.secrets:
        raise CliError(f"connection {args.conn_id!r} has no webhook secret: set its password")
    return settings.secrets[0]


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(
            f"invalid --url {url!r}: expected an http:// or https:// URL such as https://127.0.0.1:8443/reclaim/webhooks/reclaim_default"
        )


def _load_deliveries(args: argparse.Namespace) -> list[Any]:
    """Build the deliveries that ``--file``, ``--scenario`` or ``--demo-scenario`` select."""
    from pydantic import ValidationError

    from airflow_provider_reclaim.simulator import (
        Outcome,
        Scenario,
        assign_expected_outcomes,
        deliveries_from_file,
        plan_scenario,
    )

    if args.file:
        deliveries = []
        for path in args.file:
            try:
                deliveries.extend(deliveries_from_file(path))
            except (OSError, ValueError) as error:
                raise CliError(f"cannot read body file {path}: {error}") from None

        # Number the deliveries across all paths and compute expectations over the whole list,
        # so that the second file with the same event is expected to be a duplicate.
        deliveries = [
            replace(delivery, label=f"{position:03d} {delivery.label.split(' ', 1)[1]}")
            for position, delivery in enumerate(deliveries)
        ]
        if args.expect in (EXPECT_AUTO, EXPECT_ANY):
            return assign_expected_outcomes(deliveries)
        return [replace(delivery, expected=Outcome(args.expect)) for delivery in deliveries]

    if args.expect != EXPECT_AUTO:
        raise UsageError(
            "--expect only applies with --file, because a scenario's plan sets the expected outcomes"
        )

    if args.demo_scenario:
        scenario = Scenario()
    else:
        try:
            scenario = Scenario.from_json_file(args.scenario)
        except OSError as error:
            raise CliError(f"cannot read scenario file {args.scenario}: {error.strerror or error}") from None
        except ValidationError as error:
            first = error.errors()[0]
            location = ".".join(str(part) for part in first.get("loc", ())) or "file"
            raise CliError(
                f"invalid scenario file {args.scenario}: at {location}: {first.get('msg')}"
            ) from None

    try:
        return plan_scenario(scenario)
    except ValueError as error:
        raise CliError(f"cannot plan the scenario: {error}") from None


def _delivery_passed(result: Any, expect: str) -> bool:
    if result.http_status is None:
        return False
    if expect == EXPECT_ANY:
        return 200 <= result.http_status < 300
    return result.matches_expected


def _result_to_json(result: Any, passed: bool, expect: str, hint: str | None) -> dict[str, Any]:
    return {
        "label": result.label,
        "category": result.category.value,
        "type": result.key.type if result.key else None,
        "meeting_id": result.key.meeting_id if result.key else None,
        "event_ts": result.key.event_ts if result.key else None,
        "expected": EXPECT_ANY if expect == EXPECT_ANY else result.expected.value,
        "expected_http_status": None if expect == EXPECT_ANY else result.expected.http_status,
        "http_status": result.http_status,
        "status": result.json_status,
        "reason": _response_reason(result),
        "passed": passed,
        "attempts": result.attempts,
        "elapsed_ms": round(result.elapsed_ms, 1),
        "error": result.error,
        "hint": hint,
    }


def run_send(args: argparse.Namespace) -> int:
    """Sign and POST the selected deliveries, print each outcome, and fail on any mismatch."""
    _check_url(args.url)
    if args.timeout <= 0:
        raise UsageError(f"--timeout must be more than 0 seconds, got {args.timeout}")

    secret = _read_secret(args)
    deliveries = _load_deliveries(args)

    verify: bool | str = True
    if args.cacert is not None:
        if not Path(args.cacert).is_file():
            raise CliError(f"CA certificate file not found: {args.cacert}")
        verify = args.cacert
    elif args.no_verify_tls:
        import urllib3

        warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
        log.warning(
            "TLS certificate verification is off, so the identity of the server at %s is not checked",
            args.url,
        )
        verify = False

    from airflow_provider_reclaim.simulator import send

    log.info("Sending %d deliveries to %s", len(deliveries), args.url)
    results = send(
        args.url,
        deliveries,
        secret,
        verify=verify,
        timeout=args.timeout,
        max_retries=args.max_retries,
        interval=args.interval,
    )

    passed = [_delivery_passed(result, args.expect) for result in results]
    # Hints explain mismatches only: an expected 401, such as the demo's tampered body, gets none.
    hints = [None if ok else _hint(result, args) for result, ok in zip(results, passed)]
    if args.json:
        print_json(
            [
                _result_to_json(result, ok, args.expect, hint)
                for result, ok, hint in zip(results, passed, hints)
            ]
        )
    else:
        _print_send_table(results, passed, args)

    failures = passed.count(False)
    errors = sum(1 for result in results if result.http_status is None)
    if failures:
        print(
            f"{PROG}: {failures} of {len(results)} deliveries did not get the expected response "
            f"({errors} without any response)",
            file=sys.stderr,
        )
        _print_hints(results, hints)
        return EXIT_FAILURE
    return EXIT_OK


def _print_send_table(results: Sequence[Any], passed: Sequence[bool], args: argparse.Namespace) -> None:
    rows = []
    for result, ok in zip(results, passed):
        expected = (
            EXPECT_ANY
            if args.expect == EXPECT_ANY
            else f"{result.expected.http_status} {result.expected.value}"
        )
        rows.append(
            (
                result.label,
                expected,
                _shorten(_describe_response(result)),
                "ok" if ok else "MISMATCH",
                result.attempts,
                f"{result.elapsed_ms:.0f}",
            )
        )
    print_table(
        ("delivery", "expected", "actual", "result", "attempts", "ms"), rows, "No deliveries were sent."
    )


def _print_hints(results: Sequence[Any], hints: Sequence[str | None]) -> None:
    """Print each distinct hint once on stderr, with the first delivery it applies to."""
    labels_by_hint: dict[str, list[str]] = {}
    for result, hint in zip(results, hints):
        if hint is not None:
            labels_by_hint.setdefault(hint, []).append(result.label)

    for hint, labels in labels_by_hint.items():
        deliveries = labels[0] if len(labels) == 1 else f"{labels[0]} and {len(labels) - 1} more"
        print(f"{PROG}: {deliveries}: {hint}", file=sys.stderr)


# Explaining responses and errors
#
# The receiver's JSON error body is {"status": "rejected", "reason": "<code>"}. These hints
# name the likely cause of each code and the next step. {conn_id} is the last part of --url.
_REASON_HINTS = {
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
_MAX_CELL_CHARS = 60


def _response_reason(result: Any) -> str | None:
    """Return the ``reason`` of the receiver's JSON response body, or None."""
    return result.reason


def _describe_response(result: Any) -> str:
    """Return the ``actual`` table text: status, JSON status and reason, or a short error."""
    if result.http_status is None:
        return f"error: {_describe_error(result.error or '')}"

    text = f"{result.http_status} {result.json_status or ''}".rstrip()
    reason = _response_reason(result)
    if reason:
        text += f" ({reason})"
    return text


def _shorten(text: str) -> str:
    if len(text) <= _MAX_CELL_CHARS:
        return text
    return text[: _MAX_CELL_CHARS - 3] + "..."


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


def _hint(result: Any, args: argparse.Namespace) -> str | None:
    """Return what probably caused a delivery's unexpected outcome and what to do, or None."""
    from airflow_provider_reclaim.simulator import Outcome

    if result.http_status is None:
        return _error_hint(result.error or "", args)

    reason = _response_reason(result)
    if reason in _REASON_HINTS:
        return f"{result.http_status} {reason}: " + _REASON_HINTS[reason].format(
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


def build_send_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "send",
        help="Sign bodies like Reclaim and POST them to a receiver.",
        description="Sign each body with HMAC-SHA256 like Reclaim, POST it, and print every delivery's "
        "outcome. Exits with 1 when a delivery gets another response than expected, or no response, "
        "and for common mistakes, such as a wrong secret, URL or certificate, prints the likely cause "
        "and a fix on stderr. "
        "Expected outcomes assume an inbox that has not seen these events yet.",
        epilog="Example: export RECLAIM_SECRET=...; airflow-reclaim send --url "
        "https://127.0.0.1:8443/reclaim/webhooks/reclaim_default --secret-env RECLAIM_SECRET "
        "--cacert reclaim-receiver.crt --file created.json",
    )
    parser.add_argument(
        "--url",
        required=True,
        help="Webhook endpoint, such as https://127.0.0.1:8443/reclaim/webhooks/<conn_id>. Redirects are not followed.",
    )

    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument(
        "--secret-env",
        metavar="VAR",
        help="Name of the environment variable that contains the webhook secret (recommended).",
    )
    secret.add_argument(
        "--conn-id",
        metavar="ID",
        help="Sign with the current secret (password) of this reclaim_webhook Airflow connection.",
    )
    secret.add_argument(
        "--secret",
        help="The webhook secret itself. It is visible in the process list and the shell history: "
        "prefer --secret-env.",
    )

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--file",
        nargs="+",
        metavar="PATH",
        help="JSON body files, or folders whose *.json files are sent in name order. Each file's exact "
        "bytes are signed and sent.",
    )
    source.add_argument(
        "--scenario", metavar="PATH", help="Scenario JSON file for the simulator's delivery plan."
    )
    source.add_argument(
        "--demo-scenario",
        action="store_true",
        help="Send the simulator's default scenario: 12 meetings with duplicates, out-of-order "
        "deliveries, a burst, a tampered body and a body that is not JSON.",
    )

    parser.add_argument(
        "--expect",
        default=EXPECT_AUTO,
        choices=(EXPECT_AUTO, "accepted", "duplicate", "quarantined", "rejected", EXPECT_ANY),
        help="Expected outcome of every --file delivery. auto (default): the first delivery of an event "
        "is accepted, repeats are duplicates, bodies without an event identity are quarantined. "
        "any: every 2xx response passes.",
    )

    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--cacert",
        metavar="FILE",
        help="PEM CA bundle that verifies the server, such as the file that serve --self-signed logs.",
    )
    tls.add_argument(
        "--no-verify-tls", action="store_true", help="Accept any server certificate. Only for tests."
    )

    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        default=10.0,
        help="Seconds to wait for each connection and response (default: 10).",
    )
    parser.add_argument(
        "--max-retries",
        type=non_negative_int,
        metavar="N",
        default=3,
        help="Retries after a 429 or 503 response, waiting for its Retry-After (default: 3).",
    )
    parser.add_argument(
        "--interval",
        type=non_negative_float,
        metavar="SECONDS",
        default=0.0,
        help="Seconds to pause between deliveries (default: 0).",
    )
    parser.add_argument(
        "--json", action="store_true", help="Print a JSON array of outcomes on stdout instead of a table."
    )
    add_common_options(parser, "WARNING")
    parser.set_defaults(handler=run_send)
