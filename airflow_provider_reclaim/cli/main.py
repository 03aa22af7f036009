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
import os
import sys
from collections.abc import Sequence

from airflow_provider_reclaim import __version__
from airflow_provider_reclaim.cli.common import (
    EXIT_FAILURE,
    PROG,
    CliError,
    configure_logging,
)
from airflow_provider_reclaim.cli.inspect import build_bookings_parser, build_inbox_parser
from airflow_provider_reclaim.cli.send import build_send_parser
from airflow_provider_reclaim.cli.serve import build_serve_parser


def build_parser() -> argparse.ArgumentParser:
    """Build the ``airflow-reclaim`` argument parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the Reclaim.ai webhook receiver, send signed test deliveries, and read the inbox.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="{serve,send,inbox,bookings}", required=True)

    build_serve_parser(subparsers)
    build_send_parser(subparsers)
    build_inbox_parser(subparsers)
    build_bookings_parser(subparsers)
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
