"""The durable inbox of verified deliveries.

The receiver stores every verified delivery here, and commits it, before it responds to Reclaim.
An event acknowledged with a 2xx therefore survives a crash of the receiver that follows. The row, not the asset event, is
the record of what must be routed.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from airflow_provider_reclaim.store.database import StoreUnavailable, as_utc, get_engine, utcnow
from airflow_provider_reclaim.store.schema import inbox_event, quarantine
from airflow_provider_reclaim.wire.events import EventKind, parse_event
from airflow_provider_reclaim.wire.record import build_record

log = logging.getLogger(__name__)

# Headers kept with each delivery. The signature is not kept: it is proof for one request,
# and the stored body can be re-verified by signing it again with the secret.
KEPT_HEADERS = ("content-type", "user-agent", "x-reclaim-api-version", "x-reclaim-webhook-type")


class InboxState(str, enum.Enum):
    """Processing state of a stored event."""

    PENDING = "pending"
    """Verified and stored, not yet routed."""
    ROUTED = "routed"
    """Applied to the ledger and handed to the task for its kind."""
    SUPERSEDED = "superseded"
    """Older than what the meeting already applied, or after its cancellation. Not routed."""
    DUPLICATE = "duplicate"
    """The ledger had already recorded this identity key. Not routed."""
    IGNORED = "ignored"
    """An event type this provider does not know. Stored, never routed."""


class DeliveryOutcome(str, enum.Enum):
    """The result of storing one delivery: a new event, a repeat, or quarantined."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"


@dataclass(frozen=True)
class StoredDelivery:
    """The result of :meth:`Inbox.store_delivery`.

    :param outcome: Whether the delivery was a new event, a repeat, or quarantined.
    :param identity_key: The event's identity key. ``None`` for a quarantined delivery.
    :param kind: The event kind, ``None`` for a quarantined delivery.
    :param row_id: The inbox row id, or the quarantine row id for a quarantined delivery.
    :param reason: Why a delivery was quarantined.
    """

    outcome: DeliveryOutcome
    identity_key: str | None = None
    kind: EventKind | None = None
    row_id: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class InboxEvent:
    """One stored event, as the trigger, the router and the CLI read it."""

    id: int
    conn_id: str
    identity_key: str
    event_type: str
    kind: EventKind
    meeting_id: str
    event_ts: datetime
    state: InboxState
    delivery_count: int
    received_at: datetime
    record: dict[str, Any]
    routed_by: str | None = None
    routed_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-safe summary that ``airflow-reclaim inbox list --json`` prints."""
        return {
            "id": self.id,
            "conn_id": self.conn_id,
            "identity_key": self.identity_key,
            "kind": self.kind.value,
            "type": self.event_type,
            "meeting_id": self.meeting_id,
            "event_ts": self.record.get("event_ts"),
            "state": self.state.value,
            "delivery_count": self.delivery_count,
            "received_at": self.received_at.isoformat(),
            "routed_by": self.routed_by,
            "routed_at": self.routed_at.isoformat() if self.routed_at else None,
        }


def inbox_event_from_row(row: Any) -> InboxEvent:
    """Build an :class:`InboxEvent` from a ``reclaim_inbox_event`` row."""
    return InboxEvent(
        id=row.id,
        conn_id=row.conn_id,
        identity_key=row.identity_key,
        event_type=row.event_type,
        kind=EventKind(row.kind),
        meeting_id=row.meeting_id,
        event_ts=as_utc(row.event_ts),
        state=InboxState(row.state),
        delivery_count=row.delivery_count,
        received_at=as_utc(row.received_at),
        record=row.record,
        routed_by=row.routed_by,
        routed_at=as_utc(row.routed_at),
    )


# Every column an InboxEvent needs. The raw body and headers stay out of listings and polls.
EVENT_COLUMNS = tuple(column for column in inbox_event.c if column.name not in ("body", "headers"))


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    lowered = {name.lower(): value for name, value in headers.items()}
    return {name: lowered[name][:512] for name in KEPT_HEADERS if name in lowered}


def _describe_validation_error(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{error.error_count()} validation error(s), first at {location}: {first.get('msg')}"


class Inbox:
    """Durable store of verified deliveries for one database URL.

    :param url: SQLAlchemy URL of the inbox database. ``None`` selects the SQLite default under
        ``AIRFLOW_HOME``.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self._engine = get_engine(url)

    def store_delivery(self, conn_id: str, body: bytes, headers: Mapping[str, str]) -> StoredDelivery:
        """Store one verified delivery and report whether it was new.

        Call this only after the signature was verified. A body that is not a Scheduling Link
        event goes to the quarantine instead, so that it is kept and not retried forever.
        Two concurrent deliveries of one event store one row: the insert relies on the unique
        constraint on ``(conn_id, identity_key)``, and the loser counts as a duplicate.

        :raises StoreUnavailable: The database could not be written. Nothing was stored.
        """
        try:
            event = parse_event(body)
        except ValidationError as error:
            return self._quarantine(conn_id, body, headers, _describe_validation_error(error))

        now = utcnow()
        kind = event.kind
        values = {
            "conn_id": conn_id,
            "identity_key": event.identity_key,
            "event_type": event.type,
            "kind": kind.value,
            "meeting_id": event.meeting_id,
            "event_ts": event.event_ts,
            "api_version": event.api_version,
            "body": body,
            "headers": _kept_headers(headers),
            "record": build_record(event),
            "received_at": now,
            "last_received_at": now,
            "delivery_count": 1,
            "state": (InboxState.IGNORED if kind is EventKind.UNKNOWN else InboxState.PENDING).value,
        }

        try:
            with self._engine.begin() as connection:
                try:
                    with connection.begin_nested():
                        row_id = connection.execute(
                            insert(inbox_event).values(**values)
                        ).inserted_primary_key[0]
                    return StoredDelivery(DeliveryOutcome.ACCEPTED, event.identity_key, kind, row_id)
                except IntegrityError:
                    pass

                same_event = (
                    inbox_event.c.conn_id == conn_id,
                    inbox_event.c.identity_key == event.identity_key,
                )
                connection.execute(
                    update(inbox_event)
                    .where(*same_event)
                    .values(delivery_count=inbox_event.c.delivery_count + 1, last_received_at=now)
                )
                row_id = connection.execute(select(inbox_event.c.id).where(*same_event)).scalar_one()
                return StoredDelivery(DeliveryOutcome.DUPLICATE, event.identity_key, kind, row_id)
        except OperationalError as error:
            raise StoreUnavailable(f"cannot write to the inbox: {error.orig}") from error

    def _quarantine(
        self, conn_id: str, body: bytes, headers: Mapping[str, str], reason: str
    ) -> StoredDelivery:
        try:
            with self._engine.begin() as connection:
                row_id = connection.execute(
                    insert(quarantine).values(
                        conn_id=conn_id,
                        received_at=utcnow(),
                        reason=reason,
                        body=body,
                        headers=_kept_headers(headers),
                    )
                ).inserted_primary_key[0]
        except OperationalError as error:
            raise StoreUnavailable(f"cannot write to the quarantine: {error.orig}") from error
        return StoredDelivery(DeliveryOutcome.QUARANTINED, row_id=row_id, reason=reason)

    def list_events(
        self,
        conn_id: str,
        *,
        states: set[InboxState] | None = None,
        after_id: int = 0,
        meeting_id: str | None = None,
        limit: int | None = None,
    ) -> list[InboxEvent]:
        """Return stored events of ``conn_id`` in arrival order, optionally filtered."""
        query = select(*EVENT_COLUMNS).where(inbox_event.c.conn_id == conn_id, inbox_event.c.id > after_id)
        if states:
            query = query.where(inbox_event.c.state.in_([state.value for state in states]))
        if meeting_id is not None:
            query = query.where(inbox_event.c.meeting_id == meeting_id)
        query = query.order_by(inbox_event.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as connection:
            return [inbox_event_from_row(row) for row in connection.execute(query)]

    def pending_ids(self, conn_id: str) -> list[int]:
        """Return the row ids of the pending events of ``conn_id``, oldest first.

        Reads only the ``(conn_id, state, id)`` index, so a poller can call it every second
        even with a large backlog.
        """
        query = (
            select(inbox_event.c.id)
            .where(inbox_event.c.conn_id == conn_id, inbox_event.c.state == InboxState.PENDING.value)
            .order_by(inbox_event.c.id)
        )
        with self._engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def get_events(self, conn_id: str, ids: Sequence[int]) -> list[InboxEvent]:
        """Return the events of ``conn_id`` with the given row ids, in arrival order."""
        if not ids:
            return []
        query = (
            select(*EVENT_COLUMNS)
            .where(inbox_event.c.conn_id == conn_id, inbox_event.c.id.in_(list(ids)))
            .order_by(inbox_event.c.id)
        )
        with self._engine.connect() as connection:
            return [inbox_event_from_row(row) for row in connection.execute(query)]

    def count_by_state(self, conn_id: str) -> dict[str, int]:
        """Return how many events of ``conn_id`` are in each state."""
        query = (
            select(inbox_event.c.state, func.count())
            .where(inbox_event.c.conn_id == conn_id)
            .group_by(inbox_event.c.state)
        )
        with self._engine.connect() as connection:
            return {state: count for state, count in connection.execute(query)}

    def list_quarantine(self, conn_id: str) -> list[dict[str, Any]]:
        """Return the quarantined deliveries of ``conn_id``, without their bodies."""
        query = (
            select(
                quarantine.c.id, quarantine.c.received_at, quarantine.c.reason, func.length(quarantine.c.body)
            )
            .where(quarantine.c.conn_id == conn_id)
            .order_by(quarantine.c.id)
        )
        with self._engine.connect() as connection:
            return [
                {
                    "id": row[0],
                    "received_at": as_utc(row[1]).isoformat(),
                    "reason": row[2],
                    "body_bytes": row[3],
                }
                for row in connection.execute(query)
            ]
