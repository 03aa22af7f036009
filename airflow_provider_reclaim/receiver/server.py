"""Run the webhook receiver on its own, outside Airflow's API server, with uvicorn.

The standalone server mounts the same application as the Airflow plugin under the same prefix,
so the URLs do not change: ``POST /reclaim/webhooks/{conn_id}`` and ``GET /reclaim/health``.
Connections are still resolved the Airflow way (secrets backends, ``AIRFLOW_CONN_<ID>``
environment variables, the metadata database), and events go to the same inbox database.

Reclaim only delivers over HTTPS, so the server speaks TLS unless it listens on a loopback
address or the caller passes ``insecure=True``.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import signal
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn
from fastapi import FastAPI

from airflow_provider_reclaim import __version__
from airflow_provider_reclaim.hooks.webhook import WebhookSettings
from airflow_provider_reclaim.receiver.app import URL_PREFIX, create_app, load_settings_from_airflow
from airflow_provider_reclaim.receiver.tls import DEFAULT_HOSTS, write_self_signed_certificate

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443

# Seconds that open requests get to finish after SIGTERM or SIGINT before uvicorn closes them.
# Reclaim expects a response within 10 seconds, so a longer grace period saves no delivery.
GRACEFUL_SHUTDOWN_SECONDS = 10

_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})


class ServerConfigError(ValueError):
    """The options passed to :func:`serve` cannot start a server. The message names the options to pass."""


class CertificateError(ServerConfigError):
    """A certificate or key file cannot be read, loaded or written."""


class ServerStartError(RuntimeError):
    """uvicorn could not start, for example because the port is in use. uvicorn logs the cause."""


@dataclass(frozen=True)
class TlsFiles:
    """Certificate and key the server presents, and how they were obtained.

    :param certfile: PEM certificate, or chain, the server presents.
    :param keyfile: PEM private key of the certificate.
    :param self_signed: Whether :func:`serve` generated the certificate.
    """

    certfile: Path
    keyfile: Path
    self_signed: bool


def is_loopback_host(host: str) -> bool:
    """Return whether ``host`` is ``localhost`` or an address in 127.0.0.0/8 or ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def format_base_url(scheme: str, host: str, port: int) -> str:
    """Return ``scheme://host:port``, with an IPv6 address in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def create_server_app(
    settings_loader: Callable[[str], WebhookSettings] = load_settings_from_airflow,
) -> FastAPI:
    """Create the top-level application that mounts the receiver at ``/reclaim``.

    :param settings_loader: Returns the settings of a connection id, as in
        :func:`~airflow_provider_reclaim.receiver.app.create_app`. The default resolves Airflow
        connections.
    """
    app = FastAPI(
        title="Reclaim webhook receiver (standalone)",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.mount(URL_PREFIX, create_app(settings_loader=settings_loader))
    return app


def check_tls_options(
    host: str,
    *,
    certfile: str | Path | None,
    keyfile: str | Path | None,
    self_signed: bool,
    insecure: bool,
) -> None:
    """Check that the TLS options fit together and that plain HTTP stays on loopback.

    :raises ServerConfigError: The options conflict, or plain HTTP was requested on an address
        other than loopback without ``insecure``.
    """
    if (certfile is None) != (keyfile is None):
        raise ServerConfigError("pass both --certfile and --keyfile, or neither")
    if self_signed and certfile is not None:
        raise ServerConfigError("pass either --certfile/--keyfile or --self-signed, not both")

    uses_tls = self_signed or certfile is not None
    if uses_tls and insecure:
        raise ServerConfigError(
            "--insecure turns TLS off, so it cannot be combined with --certfile or --self-signed"
        )
    if not uses_tls and not insecure and not is_loopback_host(host):
        raise ServerConfigError(
            f"plain HTTP is not allowed on {host!r} because it is not a loopback address. "
            "Pass --certfile and --keyfile, or --self-signed, to serve HTTPS "
            "(Reclaim only delivers to https URLs), or --insecure to serve plain HTTP anyway"
        )


def _load_certificate_files(certfile: str | Path, keyfile: str | Path) -> TlsFiles:
    """Check that the certificate and key can be loaded, so a bad file fails before binding."""
    cert_path = Path(certfile).expanduser()
    key_path = Path(keyfile).expanduser()
    for kind, path in (("certificate", cert_path), ("private key", key_path)):
        if not path.is_file():
            raise CertificateError(f"{kind} file not found: {path}")

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as error:
        raise CertificateError(
            f"cannot load the certificate {cert_path} with the key {key_path}: {error}. "
            "Pass a PEM certificate and its unencrypted PEM private key"
        ) from None
    return TlsFiles(cert_path, key_path, self_signed=False)


def _certificate_hosts(host: str) -> list[str]:
    """Return the names a generated certificate covers: the defaults plus a specific bind host."""
    hosts = list(DEFAULT_HOSTS)
    bare_host = host.strip("[]")
    if bare_host not in _WILDCARD_HOSTS and bare_host not in hosts:
        hosts.append(bare_host)
    return hosts


class _SignalRecorder:
    """Record SIGTERM and SIGINT that uvicorn re-raises after its graceful shutdown.

    uvicorn handles both signals while it runs, then restores the previous handlers and raises
    the signal again. With these handlers in place the process logs its shutdown and returns
    normally, instead of dying from the re-raised signal. A signal that arrives before uvicorn
    installs its own handlers makes the server stop as soon as it starts.

    :param server: The uvicorn server to stop.
    """

    signals = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, server: uvicorn.Server) -> None:
        self.received: list[int] = []
        self._server = server
        self._previous: dict[int, object] = {}

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signum)
        self._server.should_exit = True

    def __enter__(self) -> _SignalRecorder:
        # Signal handlers can only be installed from the main thread.
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._record) for signum in self.signals}
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    self_signed: bool = False,
    cert_dir: str | Path | None = None,
    insecure: bool = False,
    settings_loader: Callable[[str], WebhookSettings] = load_settings_from_airflow,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Run the receiver with uvicorn until SIGTERM or SIGINT.

    TLS comes from ``certfile`` and ``keyfile``, or from a self-signed certificate generated at
    start when ``self_signed`` is true. Without either, the server speaks plain HTTP, which is
    allowed only on a loopback address unless ``insecure`` is true.

    :param host: Address to bind, for example ``127.0.0.1`` or ``0.0.0.0``.
    :param port: TCP port to bind.
    :param certfile: PEM certificate (or chain) to present. Requires ``keyfile``.
    :param keyfile: PEM private key of ``certfile``, not encrypted.
    :param self_signed: Generate a self-signed certificate for ``localhost``, ``127.0.0.1`` and
        ``host``. Clients trust it by using the certificate file as their CA bundle.
    :param cert_dir: Directory for the generated certificate and key. By default a temporary
        directory, which is removed when the server stops.
    :param insecure: Allow plain HTTP on an address that is not loopback.
    :param settings_loader: Returns the settings of a connection id. The default resolves
        Airflow connections.
    :param log_level: uvicorn's log level: ``critical``, ``error``, ``warning``, ``info`` or ``debug``.
    :param access_log: Log one line per request (method, path, status, client address).
    :raises ServerConfigError: The options conflict, or plain HTTP was requested on an address
        that is not loopback.
    :raises CertificateError: The certificate files cannot be loaded, or the self-signed
        certificate cannot be written.
    :raises ServerStartError: uvicorn could not bind the address or start the application.
    """
    check_tls_options(host, certfile=certfile, keyfile=keyfile, self_signed=self_signed, insecure=insecure)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    temporary_cert_dir: str | None = None
    try:
        if certfile is not None and keyfile is not None:
            tls = _load_certificate_files(certfile, keyfile)
        elif self_signed:
            if cert_dir is None:
                temporary_cert_dir = tempfile.mkdtemp(prefix="reclaim-receiver-tls-")
                cert_dir = temporary_cert_dir
            tls = _generate_certificate(cert_dir, host)
        else:
            tls = None

        _run(host, port, tls, settings_loader, log_level, access_log)
    finally:
        if temporary_cert_dir is not None:
            shutil.rmtree(temporary_cert_dir, ignore_errors=True)


def _generate_certificate(cert_dir: str | Path, host: str) -> TlsFiles:
    try:
        paths = write_self_signed_certificate(cert_dir, hosts=_certificate_hosts(host))
    except OSError as error:
        raise CertificateError(f"cannot write the self-signed certificate to {cert_dir}: {error}") from None
    return TlsFiles(paths.certfile, paths.keyfile, self_signed=True)


def _run(
    host: str,
    port: int,
    tls: TlsFiles | None,
    settings_loader: Callable[[str], WebhookSettings],
    log_level: str,
    access_log: bool,
) -> None:
    scheme = "https" if tls else "http"
    base_url = format_base_url(scheme, host, port)
    if tls is None:
        tls_mode = "none, plain HTTP"
    elif tls.self_signed:
        tls_mode = f"self-signed certificate, which clients trust as the CA file {tls.certfile}"
    else:
        tls_mode = f"certificate {tls.certfile}"

    config = uvicorn.Config(
        create_server_app(settings_loader),
        host=host,
        port=port,
        ssl_certfile=str(tls.certfile) if tls else None,
        ssl_keyfile=str(tls.keyfile) if tls else None,
        # Logging is left to the caller. The CLI sends uvicorn's records to its stderr handler.
        log_config=None,
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(config)

    log.info(
        "Starting the Reclaim webhook receiver %s on %s (TLS: %s). Webhook URL: %s%s/webhooks/<conn_id>, health: %s%s/health",
        __version__,
        base_url,
        tls_mode,
        base_url,
        URL_PREFIX,
        base_url,
        URL_PREFIX,
    )
    with _SignalRecorder(server) as recorder:
        try:
            server.run()
        except SystemExit as error:
            # uvicorn logs why it could not start (port in use, address not available, failed
            # lifespan startup) and then calls sys.exit().
            raise ServerStartError(
                f"the receiver could not start on {base_url} (uvicorn exit code {error.code})"
            ) from None

    stopped_by = ", ".join(signal.Signals(signum).name for signum in recorder.received) or "no signal"
    log.info("Stopped the Reclaim webhook receiver on %s (%s)", base_url, stopped_by)
