"""SQLAlchemy engines for the inbox and the ledger.

Both live in one database, named by a SQLAlchemy URL on the connection. The default is a
SQLite file under ``AIRFLOW_HOME`` in write-ahead-log mode. The queries use SQLAlchemy Core
only, with no SQLite-specific SQL, so a PostgreSQL URL works the same way.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from airflow_provider_reclaim.store.schema import metadata

log = logging.getLogger(__name__)

DEFAULT_INBOX_FILENAME = "reclaim_inbox.db"

# How long a writer waits for SQLite's write lock before the store reports itself unavailable.
SQLITE_BUSY_TIMEOUT_SECONDS = 30

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


class StoreUnavailable(Exception):
    """The inbox database cannot be reached or written right now. The caller may retry later."""


def default_inbox_url() -> str:
    """Return the SQLite URL of ``reclaim_inbox.db`` under ``AIRFLOW_HOME`` (``~/airflow`` when unset)."""
    airflow_home = Path(os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow").expanduser()
    return f"sqlite:///{airflow_home / DEFAULT_INBOX_FILENAME}"


def _configure_sqlite(dbapi_connection, _connection_record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the receiver write while triggers and tasks read. synchronous=FULL makes a
    # commit durable against power loss too, not only against a crash of the process.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
    cursor.close()


def get_engine(url: str | None = None) -> Engine:
    """Return the shared engine for ``url``, creating the tables on first use.

    :param url: A SQLAlchemy URL. ``None`` or an empty string selects :func:`default_inbox_url`.
    :raises StoreUnavailable: The database cannot be opened or its tables cannot be created.
    """
    url = url or default_inbox_url()
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine

        parsed = make_url(url)
        is_sqlite = parsed.get_backend_name() == "sqlite"
        # A URI filename (file:...?uri=true) names its own path, so only plain paths get a directory.
        is_uri = str(parsed.query.get("uri", "")).lower() == "true"
        if is_sqlite and parsed.database and parsed.database != ":memory:" and not is_uri:
            try:
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreUnavailable(
                    f"cannot create the directory of the inbox database: {error}"
                ) from error

        engine = create_engine(
            url,
            pool_pre_ping=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS} if is_sqlite else {},
        )
        if is_sqlite:
            event.listen(engine, "connect", _configure_sqlite)

        try:
            metadata.create_all(engine, checkfirst=True)
        except Exception as error:
            engine.dispose()
            raise StoreUnavailable(f"cannot open the inbox database: {type(error).__name__}") from error

        log.info("Opened the Reclaim inbox database (backend %s)", parsed.get_backend_name())
        _engines[url] = engine
        return engine


def as_utc(value: datetime | None) -> datetime | None:
    """Attach UTC to a naive time read back from SQLite, which drops the offset on storage."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def utcnow() -> datetime:
    """Return the current time as aware UTC."""
    return datetime.now(timezone.utc)
