"""Shared pieces of the ``airflow-reclaim`` command: errors, logging, connections, output, option types."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PROG = "airflow-reclaim"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# uvicorn's loggers, which Airflow's logging setup sends to stdout or drops. The CLI sends
# them to the root handler on stderr like every other log line.
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


# The same defaults as receiver.server.serve(), repeated so that --help does not import Airflow.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443

EXPECT_ANY = "any"
EXPECT_AUTO = "auto"


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
    try:
        return webhook.ReclaimWebhookHook(reclaim_conn_id=conn_id).get_settings()
    except webhook.UnknownConnection as error:
        raise CliError(str(error)) from None
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
        raise CliError(
            f"invalid inbox database URL {url!r}: expected a SQLAlchemy URL such as sqlite:////path/inbox.db"
        ) from None

    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database).expanduser()
    if not path.is_file():
        raise CliError(
            f"inbox database file not found: {path}. The receiver creates it with the first delivery. "
            "Check the connection's inbox_url extra or pass --inbox-url"
        )


def open_store(factory: Callable[[str], Any], url: str) -> Any:
    """Open an ``Inbox`` or a ``Ledger`` on ``url`` and turn database errors into ``CliError``."""
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_provider_reclaim.store.database import StoreUnavailable

    _check_database_exists(url)
    try:
        return factory(url)
    except (StoreUnavailable, SQLAlchemyError) as error:
        raise CliError(f"cannot open the inbox database {_describe_url(url)}: {error}") from None


def query_store(query: Callable[[], list[Any]], url: str) -> list[Any]:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return query()
    except SQLAlchemyError as error:
        raise CliError(
            f"cannot read the inbox database {_describe_url(url)}: {type(error).__name__}"
        ) from None


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


# Argument parsing


def port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid port {value!r}: expected a number from 1 to 65535"
        ) from None
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


non_negative_int = _non_negative(int)
non_negative_float = _non_negative(float)


def add_common_options(parser: argparse.ArgumentParser, default_level: str) -> None:
    parser.add_argument(
        "--log-level",
        default=default_level,
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help=f"Lowest level of log lines written to stderr (default: {default_level}).",
    )


def add_inbox_options(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument(
        "--json", action="store_true", help="Print a JSON array on stdout instead of a table."
    )
