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
from airflow_provider_reclaim.cli.hints import delivery_hint, describe_response, shorten_cell

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
        "reason": result.reason,
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
    hints = [None if ok else delivery_hint(result, args) for result, ok in zip(results, passed)]
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
                shorten_cell(describe_response(result)),
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
