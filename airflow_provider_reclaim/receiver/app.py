"""The webhook receiver: a FastAPI application that verifies and stores Reclaim deliveries.

Routes, relative to where the application is mounted (``/reclaim`` on Airflow's API server and
in ``airflow-reclaim serve``):

- ``POST /webhooks/{conn_id}`` receives one delivery for the ``reclaim_webhook`` connection
  ``conn_id``;
- ``GET /health`` reports that the receiver is up.

Airflow applies no authentication to plugin applications, so the signature is the only
authentication. Each request goes through these steps in order: size limit, signature over the
raw bytes, durable storage, response. Nothing is acknowledged before it is stored.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from airflow_provider_reclaim import __version__
from airflow_provider_reclaim.hooks.webhook import (
    InvalidConnectionSettings,
    UnknownConnection,
    WebhookSettings,
)
from airflow_provider_reclaim.store.database import StoreUnavailable
from airflow_provider_reclaim.store.inbox import DeliveryOutcome, Inbox
from airflow_provider_reclaim.wire import signature

log = logging.getLogger(__name__)

# Where the application is mounted, on Airflow's API server and in airflow-reclaim serve alike.
URL_PREFIX = "/reclaim"

# Connection ids Airflow accepts; anything else cannot name a connection.
_CONN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")

# Seconds that Reclaim is asked to wait before retrying when the inbox is unavailable.
RETRY_AFTER_SECONDS = 30

# Seconds a client may take to send the whole body. Reclaim expects a response within 10 s.
BODY_READ_TIMEOUT_SECONDS = 10.0

# Seconds a resolved connection is reused before it is looked up again. A rotated secret
# takes effect within this time.
SETTINGS_CACHE_SECONDS = 10.0


def load_settings_from_airflow(conn_id: str) -> WebhookSettings:
    """Resolve a ``reclaim_webhook`` connection the way Airflow resolves connections.

    :raises UnknownConnection: The connection does not exist or is of another type.
    :raises InvalidConnectionSettings: The connection's extras are unusable.
    """
    from airflow_provider_reclaim.hooks.webhook import ReclaimWebhookHook

    return ReclaimWebhookHook(reclaim_conn_id=conn_id).get_settings()


class _SettingsCache:
    def __init__(self, loader: Callable[[str], WebhookSettings], ttl: float) -> None:
        self._loader = loader
        self._ttl = ttl
        self._entries: dict[str, tuple[float, WebhookSettings]] = {}
        self._lock = threading.Lock()

    def get(self, conn_id: str) -> WebhookSettings:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(conn_id)
        if entry and now - entry[0] < self._ttl:
            return entry[1]

        settings = self._loader(conn_id)
        with self._lock:
            self._entries[conn_id] = (now, settings)
        return settings


class _BodyTooLarge(Exception):
    pass


class _RejectionLog:
    """Log rejected deliveries, at most ``limit`` lines per reason in each ``window`` seconds.

    Rejections past the limit are counted, and the count is added to the next line logged for
    that reason. Keys are reasons only, so random connection ids in URLs cannot grow memory.
    """

    def __init__(self, limit: int = 20, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._windows: dict[str, tuple[float, int, int]] = {}
        self._lock = threading.Lock()

    def warning(self, reason: str, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            started, logged, suppressed = self._windows.get(reason, (now, 0, 0))
            if now - started >= self.window:
                started, logged = now, 0
            if logged >= self.limit:
                self._windows[reason] = (started, logged, suppressed + 1)
                return
            self._windows[reason] = (started, logged + 1, 0)

        if suppressed:
            message += " (%d more %s rejections were not logged)"
            args = (*args, suppressed, reason)
        log.warning(message, *args)


async def _read_body(request: Request, max_bytes: int) -> bytes:
    """Read the request body, stopping as soon as it exceeds ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _BodyTooLarge

    chunks = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _store_delivery(settings: WebhookSettings, body: bytes, headers: dict[str, str]):
    return Inbox(settings.inbox_url).store_delivery(settings.conn_id, body, headers)


def create_app(
    settings_loader: Callable[[str], WebhookSettings] = load_settings_from_airflow,
    settings_cache_seconds: float = SETTINGS_CACHE_SECONDS,
    serve_docs: bool = False,
) -> FastAPI:
    """Create the receiver application.

    :param settings_loader: Returns the settings of a connection id. The default resolves
        Airflow connections. It must raise :class:`UnknownConnection` for an unknown id.
    :param settings_cache_seconds: How long resolved settings are reused, in seconds.
    :param serve_docs: Serve ``/docs`` and ``/openapi.json``. Off by default, because Airflow
        serves plugin applications without authentication.
    """
    app = FastAPI(
        title="Reclaim webhook receiver",
        version=__version__,
        description="Receives signed Reclaim Scheduling Link events and stores them in the inbox.",
        docs_url="/docs" if serve_docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if serve_docs else None,
    )
    settings_cache = _SettingsCache(settings_loader, settings_cache_seconds)
    rejections = _RejectionLog()

    def reject(status_code: int, reason: str, message: str, *args: object) -> JSONResponse:
        rejections.warning(reason, message, *args)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status_code == 503 else None
        return JSONResponse(
            {"status": "rejected", "reason": reason}, status_code=status_code, headers=headers
        )

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    # Reclaim does not follow redirects, so the trailing-slash form is handled by the same route.
    @app.post("/webhooks/{conn_id}/", include_in_schema=False)
    @app.post("/webhooks/{conn_id}")
    async def receive(conn_id: str, request: Request) -> JSONResponse:
        client = request.client.host if request.client else "unknown"

        if not _CONN_ID_PATTERN.match(conn_id):
            return reject(
                404,
                "unknown_connection",
                "Rejected delivery from %s: invalid connection id in the URL",
                client,
            )
        try:
            settings = await run_in_threadpool(settings_cache.get, conn_id)
        except UnknownConnection as error:
            return reject(
                404, "unknown_connection", "Rejected delivery from %s to %r: %s", client, conn_id, error
            )
        except InvalidConnectionSettings as error:
            return reject(
                503,
                "connection_misconfigured",
                "Cannot receive for connection %r, its settings are invalid, asking Reclaim to retry: %s",
                conn_id,
                error,
            )

        try:
            body = await asyncio.wait_for(
                _read_body(request, settings.max_body_bytes), BODY_READ_TIMEOUT_SECONDS
            )
        except ClientDisconnect:
            return reject(
                400,
                "incomplete_body",
                "Dropped delivery to %r from %s: the client disconnected before sending the whole body",
                conn_id,
                client,
            )
        except asyncio.TimeoutError:
            return reject(
                408,
                "body_timeout",
                "Rejected delivery to %r from %s: the body did not arrive within %.0f s",
                conn_id,
                client,
                BODY_READ_TIMEOUT_SECONDS,
            )
        except _BodyTooLarge:
            return reject(
                413,
                "body_too_large",
                "Rejected delivery to %r from %s: body over the %d-byte limit",
                conn_id,
                client,
                settings.max_body_bytes,
            )

        try:
            secret_index = signature.verify(
                body, request.headers.getlist(signature.SIGNATURE_HEADER), settings.secrets
            )
        except signature.SignatureError as error:
            return reject(
                401,
                error.reason,
                "Rejected delivery to %r from %s (%d-byte body): %s",
                conn_id,
                client,
                len(body),
                error.reason,
            )
        if secret_index > 0:
            log.info(
                "Delivery to %r was signed with previous secret #%d; finish the rotation",
                conn_id,
                secret_index,
            )

        try:
            stored = await run_in_threadpool(_store_delivery, settings, body, dict(request.headers))
        except StoreUnavailable as error:
            log.error("Cannot store a verified delivery to %r, asking Reclaim to retry: %s", conn_id, error)
            return JSONResponse(
                {"status": "unavailable", "reason": "inbox_unavailable"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )

        if stored.outcome is DeliveryOutcome.QUARANTINED:
            log.warning(
                "Quarantined a signed delivery to %r as row %d, it is not a Scheduling Link event: %s",
                conn_id,
                stored.row_id,
                stored.reason,
            )
            return JSONResponse({"status": "quarantined", "reason": stored.reason}, status_code=202)

        log.info(
            "Stored event %s (%s) for %r as inbox row %d: %s",
            stored.identity_key,
            stored.kind.value if stored.kind else "unknown",
            conn_id,
            stored.row_id,
            stored.outcome.value,
        )
        return JSONResponse(
            {"status": stored.outcome.value, "identity_key": stored.identity_key}, status_code=200
        )

    return app
