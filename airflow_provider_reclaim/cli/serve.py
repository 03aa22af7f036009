"""The ``airflow-reclaim serve`` subcommand: run the webhook receiver on its own."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_provider_reclaim.cli.common import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    EXIT_OK,
    CliError,
    UsageError,
    add_common_options,
    configure_logging,
    port,
)


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


def build_serve_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="Run the webhook receiver on its own, over HTTPS.",
        description="Run the webhook receiver with uvicorn until SIGTERM or SIGINT. The URLs are the "
        "same as on Airflow's API server: POST /reclaim/webhooks/<conn_id> and GET /reclaim/health. "
        "Connections are resolved the Airflow way (secrets backends, AIRFLOW_CONN_<ID> variables, "
        "the metadata database). Plain HTTP is allowed only on a loopback address, or with --insecure.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help=f"Address to listen on (default: {DEFAULT_HOST})."
    )
    parser.add_argument(
        "--port",
        type=port,
        metavar="PORT",
        default=DEFAULT_PORT,
        help=f"TCP port to listen on (default: {DEFAULT_PORT}).",
    )
    parser.add_argument(
        "--certfile",
        metavar="FILE",
        help="PEM certificate (or chain) the server presents. Requires --keyfile.",
    )
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
    add_common_options(parser, "INFO")
    parser.set_defaults(handler=run_serve)
