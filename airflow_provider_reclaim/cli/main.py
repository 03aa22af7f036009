"""The ``airflow-reclaim`` command: run the receiver, send signed test deliveries, read the inbox.

Subcommands:

- ``serve`` runs the webhook receiver on its own with uvicorn, over TLS;
- ``send`` signs bodies like Reclaim and POSTs them to a receiver, then reports each outcome;
- ``inbox list`` and ``inbox quarantine`` print what the receiver stored for a connection;
- ``bookings`` prints each meeting's state in the ledger.

Exit codes: 0 on success, 1 when the command failed (unknown connection, unreachable database or
URL, unreadable file, a delivery whose outcome differs from the expected one), 2 for invalid
options. Output meant for scripts goes to stdout, logs and errors to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_reclaim import __version__

log = logging.getLogger(__name__)

PROG = "airflow-reclaim"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# uvicorn's loggers, which Airflow's logging setup sends to stdout or drops. The CLI sends
# them to the root handler on stderr like every other log line.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")

_CONN_TYPE = "reclaim_webhook"

# The same defaults as receiver.server.serve(), repeated so that --help does not import Airflow.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443

_EXPECT_ANY = "any"
_EXPECT_AUTO = "auto"


class CliError(Exception):
    """An expected error: the message is printed on one line and the command exits with ``exit_code``.

    :param message: What failed and what to do next.
    :param exit_code: ``EXIT_FAILURE`` for a failure, ``EXIT_USAGE`` for invalid options.
    """

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(CliError):
    """Options that do not fit together or name something that does not exist in the environment."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_USAGE)


# Logging


def configure_logging(level: str) -> None:
    """Send every log record at ``level`` or above to stderr, uvicorn's included.

    Importing Airflow installs a root handler on stdout. This replaces it, so that stdout
    carries only the command's output, which scripts parse. Call it again after anything that
    imports Airflow for the first time.

    :param level: A ``logging`` level name, such as ``INFO``.
    """
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT, stream=sys.stderr, force=True)
    for name in _UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True


def _import_airflow_hook(log_level: str) -> Any:
    """Import the hook module, which imports Airflow, and restore the CLI's logging afterwards."""
    from airflow_provider_reclaim.hooks import webhook

    configure_logging(log_level)
    return webhook


# Airflow connections and the inbox URL


def load_connection_settings(conn_id: str, log_level: str) -> Any:
    """Resolve a ``reclaim_webhook`` connection the way Airflow does and return its settings.

    :param conn_id: The connection id.
    :param log_level: Log level to restore after Airflow is imported.
    :raises CliError: The connection does not exist, is of another type, or has invalid extras.
    """
    webhook = _import_airflow_hook(log_level)
    from airflow.exceptions import AirflowNotFoundException

    hook = webhook.ReclaimWebhookHook(reclaim_conn_id=conn_id)
    try:
        connection = hook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise CliError(
            f"connection {conn_id!r} not found: define it in Airflow, for example with the "
            f"AIRFLOW_CONN_{conn_id.upper()} environment variable"
        ) from None

    if connection.conn_type != _CONN_TYPE:
        raise CliError(f"connection {conn_id!r} is of type {connection.conn_type!r}, expected {_CONN_TYPE!r}")
    try:
        return hook.get_settings()
    except webhook.InvalidConnectionSettings as error:
        raise CliError(f"connection {conn_id!r} has invalid settings: {error}") from None


def resolve_inbox_url(conn_id: str, inbox_url: str | None, log_level: str) -> str:
    """Return the inbox URL: ``inbox_url`` if given, else the connection's, else the default.

    :raises CliError: ``inbox_url`` is not given and the connection cannot be resolved.
    """
    if inbox_url:
        return inbox_url

    from airflow_provider_reclaim.store.database import default_inbox_url

    settings = load_connection_settings(conn_id, log_level)
    return settings.inbox_url or default_inbox_url()


def _describe_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid URL>"


def _check_database_exists(url: str) -> None:
    """Reject a SQLite URL whose file does not exist, instead of creating an empty database."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise CliError(f"invalid inbox database URL {url!r}: expected a SQLAlchemy URL such as sqlite:////path/inbox.db") from None

    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database).expanduser()
    if not path.is_file():
        raise CliError(
            f"inbox database file not found: {path}. The receiver creates it with the first delivery. "
            "Check the connection's inbox_url extra or pass --inbox-url"
        )


def _open_store(factory: Callable[[str], Any], url: str) -> Any:
    """Open an ``Inbox`` or a ``Ledger`` on ``url`` and turn database errors into ``CliError``."""
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_provider_reclaim.store.database import StoreUnavailable

    _check_database_exists(url)
    try:
        return factory(url)
    except (StoreUnavailable, SQLAlchemyError) as error:
        raise CliError(f"cannot open the inbox database {_describe_url(url)}: {error}") from None


def _query_store(query: Callable[[], list[Any]], url: str) -> list[Any]:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return query()
    except SQLAlchemyError as error:
        raise CliError(f"cannot read the inbox database {_describe_url(url)}: {type(error).__name__}") from None


# Output


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], empty_message: str) -> None:
    """Print ``rows`` as a compact table with a header line, or ``empty_message`` for no rows."""
    if not rows:
        print(empty_message)
        return

    cells = [[("" if value is None else str(value)) for value in row] for row in rows]
    widths = [max(len(column), *(len(row[index]) for row in cells)) for index, column in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.ljust(width) for value, width in zip(values, widths)).rstrip()

    print(line(columns))
    print(line(["-" * width for width in widths]))
    for row in cells:
        print(line(row))


def print_json(items: list[Any]) -> None:
    """Print ``items`` as one JSON array on stdout."""
    json.dump(items, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


# serve


def run_serve(args: argparse.Namespace) -> int:
    """Run the receiver until SIGTERM or SIGINT."""
    if args.cert_dir is not None and not args.self_signed:
        raise UsageError("--cert-dir only applies with --self-signed")

    from airflow_provider_reclaim.receiver import server

    configure_logging(args.log_level)
    try:
        server.serve(
            args.host,
            args.port,
            certfile=args.certfile,
            keyfile=args.keyfile,
            self_signed=args.self_signed,
            cert_dir=args.cert_dir,
            insecure=args.insecure,
            log_level=args.log_level.lower(),
            access_log=not args.no_access_log,
        )
    except server.CertificateError as error:
        raise CliError(str(error)) from None
    except server.ServerConfigError as error:
        raise UsageError(str(error)) from None
    except server.ServerStartError as error:
        raise CliError(str(error)) from None
    return EXIT_OK


# send


def _read_secret(args: argparse.Namespace) -> str:
    if args.secret is not None:
        if not args.secret:
            raise UsageError("--secret is empty")
        return args.secret

    if args.secret_env is not None:
        value = os.environ.get(args.secret_env, "")
        if not value:
            raise UsageError(f"environment variable {args.secret_env} is not set or empty: export the webhook secret in it")
        return value

    settings = load_connection_settings(args.conn_id, args.log_level)
    if not settings.secrets:
        raise CliError(f"connection {args.conn_id!r} has no webhook secret: set its password")
    return settings.secrets[0]


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"invalid --url {url!r}: expected an http:// or https:// URL such as https://127.0.0.1:8443/reclaim/webhooks/reclaim_default")


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
        if args.expect in (_EXPECT_AUTO, _EXPECT_ANY):
            return assign_expected_outcomes(deliveries)
        return [replace(delivery, expected=Outcome(args.expect)) for delivery in deliveries]

    if args.expect != _EXPECT_AUTO:
        raise UsageError("--expect only applies with --file, because a scenario's plan sets the expected outcomes")

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
            raise CliError(f"invalid scenario file {args.scenario}: at {location}: {first.get('msg')}") from None

    try:
        return plan_scenario(scenario)
    except ValueError as error:
        raise CliError(f"cannot plan the scenario: {error}") from None


def _delivery_passed(result: Any, expect: str) -> bool:
    if result.http_status is None:
        return False
    if expect == _EXPECT_ANY:
        return 200 <= result.http_status < 300
    return result.matches_expected


def _result_to_json(result: Any, passed: bool, expect: str) -> dict[str, Any]:
    return {
        "label": result.label,
        "category": result.category.value,
        "type": result.key.type if result.key else None,
        "meeting_id": result.key.meeting_id if result.key else None,
        "event_ts": result.key.event_ts if result.key else None,
        "expected": _EXPECT_ANY if expect == _EXPECT_ANY else result.expected.value,
        "expected_http_status": None if expect == _EXPECT_ANY else result.expected.http_status,
        "http_status": result.http_status,
        "status": result.json_status,
        "passed": passed,
        "attempts": result.attempts,
        "elapsed_ms": round(result.elapsed_ms, 1),
        "error": result.error,
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
        log.warning("TLS certificate verification is off, so the identity of the server at %s is not checked", args.url)
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
    if args.json:
        print_json([_result_to_json(result, ok, args.expect) for result, ok in zip(results, passed)])
    else:
        _print_send_table(results, passed, args.expect)

    failures = passed.count(False)
    errors = sum(1 for result in results if result.http_status is None)
    if failures:
        print(
            f"{PROG}: {failures} of {len(results)} deliveries did not get the expected response "
            f"({errors} without any response)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _print_send_table(results: Sequence[Any], passed: Sequence[bool], expect: str) -> None:
    rows = []
    for result, ok in zip(results, passed):
        expected = _EXPECT_ANY if expect == _EXPECT_ANY else f"{result.expected.http_status} {result.expected.value}"
        if result.http_status is None:
            actual = f"error: {result.error}"
        else:
            actual = f"{result.http_status} {result.json_status or ''}".rstrip()
        rows.append((result.label, expected, actual, "ok" if ok else "MISMATCH", result.attempts, f"{result.elapsed_ms:.0f}"))
    print_table(("delivery", "expected", "actual", "result", "attempts", "ms"), rows, "No deliveries were sent.")


# inbox and bookings


def run_inbox_list(args: argparse.Namespace) -> int:
    """Print the events stored for a connection."""
    from airflow_provider_reclaim.store.inbox import Inbox, InboxState

    url = resolve_inbox_url(args.conn_id, args.inbox_url, args.log_level)
    inbox = _open_store(Inbox, url)
    states = {InboxState(state) for state in args.state} if args.state else None
    events = _query_store(lambda: inbox.list_events(args.conn_id, states=states, limit=args.limit), url)

    if args.json:
        print_json([event.to_json() for event in events])
        return EXIT_OK

    rows = [
        (event.id, event.identity_key, event.kind.value, event.meeting_id, event.state.value, event.delivery_count)
        for event in events
    ]
    print_table(
        ("id", "identity_key", "kind", "meeting_id", "state", "deliveries"),
        rows,
        f"No events stored for connection {args.conn_id!r}"
        + (f" in state {', '.join(sorted(args.state))}." if args.state else "."),
    )
    return EXIT_OK


def run_inbox_quarantine(args: argparse.Namespace) -> int:
    """Print the quarantined deliveries of a connection, without their bodies."""
    from airflow_provider_reclaim.store.inbox import Inbox

    url = resolve_inbox_url(args.conn_id, args.inbox_url, args.log_level)
    inbox = _open_store(Inbox, url)
    entries = _query_store(lambda: inbox.list_quarantine(args.conn_id), url)

    if args.json:
        print_json(entries)
        return EXIT_OK

    rows = [(entry["id"], entry["received_at"], entry["body_bytes"], entry["reason"]) for entry in entries]
    print_table(
        ("id", "received_at", "body_bytes", "reason"),
        rows,
        f"No quarantined deliveries for connection {args.conn_id!r}.",
    )
    return EXIT_OK


def run_bookings(args: argparse.Namespace) -> int:
    """Print each meeting's current state in the ledger."""
    from airflow_provider_reclaim.store.ledger import Ledger

    url = resolve_inbox_url(args.conn_id, args.inbox_url, args.log_level)
    ledger = _open_store(Ledger, url)
    meetings = _query_store(lambda: ledger.meetings(args.conn_id, meeting_id=args.meeting_id), url)

    if args.json:
        print_json([meeting.to_json() for meeting in meetings])
        return EXIT_OK

    rows = [
        (
            meeting.meeting_id,
            meeting.status.value,
            meeting.start_time.isoformat() if meeting.start_time else None,
            meeting.last_kind.value,
            meeting.last_event_ts.isoformat(),
            meeting.applied_count,
            meeting.scheduling_link_title,
        )
        for meeting in meetings
    ]
    print_table(
        ("meeting_id", "status", "start_time", "last_kind", "last_event_ts", "applied", "link_title"),
        rows,
        f"No meetings in the ledger for connection {args.conn_id!r}. Events appear here once a DAG routes them.",
    )
    return EXIT_OK


# Argument parsing


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}: expected a number from 1 to 65535") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {port}: expected a number from 1 to 65535")
    return port


def _non_negative(convert: Callable[[str], float]) -> Callable[[str], float]:
    """Return an argparse type that converts with ``convert`` and rejects negative numbers."""

    def parse(value: str) -> float:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
        if number < 0:
            raise argparse.ArgumentTypeError(f"expected 0 or more, got {number}")
        return number

    return parse


_non_negative_int = _non_negative(int)
_non_negative_float = _non_negative(float)


def _add_common_options(parser: argparse.ArgumentParser, default_level: str) -> None:
    parser.add_argument(
        "--log-level",
        default=default_level,
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help=f"Lowest level of log lines written to stderr (default: {default_level}).",
    )


def _add_inbox_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--conn-id",
        required=True,
        metavar="ID",
        help="Id of the reclaim_webhook connection whose rows to show. Also the source of the inbox URL.",
    )
    parser.add_argument(
        "--inbox-url",
        metavar="URL",
        help="SQLAlchemy URL of the inbox database. Default: the connection's inbox_url extra, "
        "else sqlite:///$AIRFLOW_HOME/reclaim_inbox.db.",
    )
    parser.add_argument("--json", action="store_true", help="Print a JSON array on stdout instead of a table.")


def _build_serve_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="Run the webhook receiver on its own, over HTTPS.",
        description="Run the webhook receiver with uvicorn until SIGTERM or SIGINT. The URLs are the "
        "same as on Airflow's API server: POST /reclaim/webhooks/<conn_id> and GET /reclaim/health. "
        "Connections are resolved the Airflow way (secrets backends, AIRFLOW_CONN_<ID> variables, "
        "the metadata database). Plain HTTP is allowed only on a loopback address, or with --insecure.",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"Address to listen on (default: {DEFAULT_HOST}).")
    parser.add_argument("--port", type=_port, metavar="PORT", default=DEFAULT_PORT, help=f"TCP port to listen on (default: {DEFAULT_PORT}).")
    parser.add_argument("--certfile", metavar="FILE", help="PEM certificate (or chain) the server presents. Requires --keyfile.")
    parser.add_argument("--keyfile", metavar="FILE", help="Unencrypted PEM private key of --certfile.")
    parser.add_argument(
        "--self-signed",
        action="store_true",
        help="Generate a self-signed certificate, valid 30 days, for localhost, 127.0.0.1 and --host. "
        "Its path is logged, and clients trust it as a CA file (send --cacert PATH).",
    )
    parser.add_argument(
        "--cert-dir",
        metavar="DIR",
        help="Directory where --self-signed writes reclaim-receiver.crt and reclaim-receiver.key "
        "(mode 0600). Default: a temporary directory, removed when the server stops.",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="Serve plain HTTP on an address that is not loopback. Only behind a proxy that terminates TLS.",
    )
    parser.add_argument("--no-access-log", action="store_true", help="Do not log one line per request.")
    _add_common_options(parser, "INFO")
    parser.set_defaults(handler=run_serve)


def _build_send_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "send",
        help="Sign bodies like Reclaim and POST them to a receiver.",
        description="Sign each body with HMAC-SHA256 like Reclaim, POST it, and print every delivery's "
        "outcome. Exits with 1 when a delivery gets another response than expected, or no response. "
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
    source.add_argument("--scenario", metavar="PATH", help="Scenario JSON file for the simulator's delivery plan.")
    source.add_argument(
        "--demo-scenario",
        action="store_true",
        help="Send the simulator's default scenario: 12 meetings with duplicates, out-of-order "
        "deliveries, a burst, a tampered body and a body that is not JSON.",
    )

    parser.add_argument(
        "--expect",
        default=_EXPECT_AUTO,
        choices=(_EXPECT_AUTO, "accepted", "duplicate", "quarantined", "rejected", _EXPECT_ANY),
        help="Expected outcome of every --file delivery. auto (default): the first delivery of an event "
        "is accepted, repeats are duplicates, bodies without an event identity are quarantined. "
        "any: every 2xx response passes.",
    )

    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--cacert", metavar="FILE", help="PEM CA bundle that verifies the server, such as the file that serve --self-signed logs.")
    tls.add_argument("--no-verify-tls", action="store_true", help="Accept any server certificate. Only for tests.")

    parser.add_argument("--timeout", type=float, metavar="SECONDS", default=10.0, help="Seconds to wait for each connection and response (default: 10).")
    parser.add_argument(
        "--max-retries",
        type=_non_negative_int,
        metavar="N",
        default=3,
        help="Retries after a 429 or 503 response, waiting for its Retry-After (default: 3).",
    )
    parser.add_argument(
        "--interval",
        type=_non_negative_float,
        metavar="SECONDS",
        default=0.0,
        help="Seconds to pause between deliveries (default: 0).",
    )
    parser.add_argument("--json", action="store_true", help="Print a JSON array of outcomes on stdout instead of a table.")
    _add_common_options(parser, "WARNING")
    parser.set_defaults(handler=run_send)


def _build_inbox_parser(subparsers: Any) -> None:
    from airflow_provider_reclaim.store.inbox import InboxState

    parser = subparsers.add_parser("inbox", help="Show what the receiver stored for a connection.")
    inbox_commands = parser.add_subparsers(dest="inbox_command", metavar="{list,quarantine}", required=True)

    list_parser = inbox_commands.add_parser(
        "list",
        help="Print stored events: id, identity key, kind, meeting id, state, delivery count.",
        description="Print the events stored for a connection, in arrival order.",
    )
    _add_inbox_options(list_parser)
    list_parser.add_argument(
        "--state",
        action="append",
        metavar="STATE",
        choices=[state.value for state in InboxState],
        help="Show only events in this state: " + ", ".join(state.value for state in InboxState) + ". Repeat the option for several states.",
    )
    list_parser.add_argument("--limit", type=_non_negative_int, metavar="N", help="Show at most this many events (default: all).")
    _add_common_options(list_parser, "WARNING")
    list_parser.set_defaults(handler=run_inbox_list)

    quarantine_parser = inbox_commands.add_parser(
        "quarantine",
        help="Print quarantined deliveries: signed bodies that are not Scheduling Link events.",
        description="Print the quarantined deliveries of a connection: id, time received, body size "
        "in bytes and why the body was not accepted as an event. Bodies are not printed.",
    )
    _add_inbox_options(quarantine_parser)
    _add_common_options(quarantine_parser, "WARNING")
    quarantine_parser.set_defaults(handler=run_inbox_quarantine)


def _build_bookings_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bookings",
        help="Print each meeting's current state in the ledger.",
        description="Print each meeting's state after the last event a DAG routed: booked, rescheduled "
        "or cancelled, with its start time and scheduling link. Events that are still pending in "
        "the inbox are not shown.",
    )
    _add_inbox_options(parser)
    parser.add_argument("--meeting-id", metavar="ID", help="Show only this meeting.")
    _add_common_options(parser, "WARNING")
    parser.set_defaults(handler=run_bookings)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``airflow-reclaim`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the Reclaim.ai webhook receiver, send signed test deliveries, and read the inbox.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="{serve,send,inbox,bookings}", required=True)

    _build_serve_parser(subparsers)
    _build_send_parser(subparsers)
    _build_inbox_parser(subparsers)
    _build_bookings_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``airflow-reclaim`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)

    try:
        return args.handler(args)
    except CliError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away, as with `| head`. Point stdout at /dev/null so that
        # the interpreter's final flush does not fail a second time.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
