"""The per-meeting ledger that makes routing idempotent and safe against disorder.

Reclaim may deliver an event twice and in any order. The ledger keeps, for each meeting, the
event it last applied, and decides for each new event whether it is a live change:

- an event whose identity key the ledger already recorded is a duplicate and is dropped;
- an event older than what the meeting already applied is superseded;
- a cancellation is final, so no later event revives a cancelled meeting;
- two events with equal ``event_ts`` rank cancelled > rescheduled > created.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, case, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from airflow_provider_reclaim.store.database import StoreUnavailable, as_utc, get_engine, utcnow
from airflow_provider_reclaim.store.inbox import EVENT_COLUMNS, InboxEvent, InboxState, inbox_event_from_row
from airflow_provider_reclaim.store.schema import inbox_event, ledger_event, ledger_meeting
from airflow_provider_reclaim.wire.events import EventKind

log = logging.getLogger(__name__)

DEFAULT_MAX_EVENTS_PER_BATCH = 500
"""Events routed by one call at most. Airflow maps at most 1024 task instances per task by default."""


def claim_key(dag_id: str, run_id: str) -> str:
    """Return the claim key that a DAG run routes under: ``<dag_id>/<run_id>``."""
    return f"{dag_id}/{run_id}"


class MeetingStatus(str, enum.Enum):
    """A meeting's state after the last event the ledger applied."""

    BOOKED = "booked"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"


_STATUS_BY_KIND = {
    EventKind.CREATED: MeetingStatus.BOOKED,
    EventKind.RESCHEDULED: MeetingStatus.RESCHEDULED,
    EventKind.CANCELLED: MeetingStatus.CANCELLED,
}


@dataclass(frozen=True)
class MeetingState:
    """The ledger state of one meeting."""

    conn_id: str
    meeting_id: str
    status: MeetingStatus
    last_identity_key: str
    last_kind: EventKind
    last_event_ts: datetime
    start_time: datetime | None
    end_time: datetime | None
    scheduling_link_title: str | None
    custom_data: dict[str, Any] | None
    applied_count: int
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-safe summary that ``airflow-reclaim bookings --json`` prints."""
        return {
            "conn_id": self.conn_id,
            "meeting_id": self.meeting_id,
            "status": self.status.value,
            "last_kind": self.last_kind.value,
            "last_event_ts": self.last_event_ts.isoformat(),
            "last_identity_key": self.last_identity_key,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "end_time": self.end_time.isoformat() if self.end_time else None,
            "scheduling_link_title": self.scheduling_link_title,
            "custom_data": self.custom_data,
            "applied_count": self.applied_count,
            "updated_at": self.updated_at.isoformat(),
        }


def _meeting_from_row(row: Any) -> MeetingState:
    return MeetingState(
        conn_id=row.conn_id,
        meeting_id=row.meeting_id,
        status=MeetingStatus(row.status),
        last_identity_key=row.last_identity_key,
        last_kind=EventKind(row.last_kind),
        last_event_ts=as_utc(row.last_event_ts),
        start_time=as_utc(row.start_time),
        end_time=as_utc(row.end_time),
        scheduling_link_title=row.scheduling_link_title,
        custom_data=row.custom_data,
        applied_count=row.applied_count,
        updated_at=as_utc(row.updated_at),
    )


def decide(current: MeetingState | None, kind: EventKind, event_ts: datetime) -> InboxState:
    """Decide whether an event is a live change for its meeting.

    :param current: The meeting's ledger state, ``None`` when the ledger has not seen it.
    :param kind: The event's kind.
    :param event_ts: The event's instant.
    :return: ``ROUTED`` for a live change, ``SUPERSEDED`` otherwise, ``IGNORED`` for an unknown kind.
    """
    if kind is EventKind.UNKNOWN:
        return InboxState.IGNORED
    if current is None:
        return InboxState.ROUTED
    if current.status is MeetingStatus.CANCELLED:
        return InboxState.SUPERSEDED
    if (event_ts, kind.precedence) > (current.last_event_ts, current.last_kind.precedence):
        return InboxState.ROUTED
    return InboxState.SUPERSEDED


@dataclass
class RoutingBatch:
    """The events one routing call claimed, each with the state it left them in.

    :param routed_by: The claim key, for example ``<dag_id>/<run_id>``.
    :param events: The claimed events in the order they were applied.
    :param meeting_status: The current ledger status of each meeting in the batch.
    """

    routed_by: str
    events: list[InboxEvent] = field(default_factory=list)
    meeting_status: dict[str, str] = field(default_factory=dict)

    def records(self, kind: EventKind) -> list[dict[str, Any]]:
        """Return the records of the routed events of ``kind``, one per event.

        Each record gains ``meeting_status``, the meeting's status in the ledger now. One batch
        can route several events of one meeting, and their handlers run in parallel, so a
        ``created`` handler can see there that the meeting was cancelled in the same batch.
        """
        return [
            {**event.record, "meeting_status": self.meeting_status.get(event.meeting_id)}
            for event in self.events
            if event.state is InboxState.ROUTED and event.kind is kind
        ]

    def summary(self) -> dict[str, Any]:
        """Return the claimed identity keys grouped by the state they ended in."""
        grouped: dict[str, list[str]] = {
            state.value: [] for state in InboxState if state is not InboxState.PENDING
        }
        for event in self.events:
            grouped[event.state.value].append(event.identity_key)
        return {"routed_by": self.routed_by, "events": len(self.events), "by_state": grouped}


class Ledger:
    """Per-meeting ledger over the inbox database.

    :param url: SQLAlchemy URL of the inbox database. ``None`` selects the SQLite default.
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self._engine = get_engine(url)

    def route_pending(
        self, conn_id: str, routed_by: str, max_events: int = DEFAULT_MAX_EVENTS_PER_BATCH
    ) -> RoutingBatch:
        """Claim the pending events of ``conn_id``, apply them to the ledger, and return them.

        Claiming and applying happen in one transaction, so an event is claimed by exactly one
        caller, and a failure leaves every event pending. Calling again with the same
        ``routed_by`` returns the events that key already claimed, plus any new pending ones, so
        a retried task gets its own events again instead of losing them.

        :param conn_id: The connection whose events to route.
        :param routed_by: A stable claim key for the caller, such as ``<dag_id>/<run_id>``.
        :param max_events: Maximum number of events this claim key holds. The rest stay pending.
        :raises StoreUnavailable: The database could not be written. Nothing was claimed.
        """
        try:
            with self._engine.begin() as connection:
                self._claim(connection, conn_id, routed_by, max_events)
                claimed = connection.execute(
                    select(*EVENT_COLUMNS).where(
                        inbox_event.c.conn_id == conn_id,
                        inbox_event.c.routed_by == routed_by,
                        inbox_event.c.state == InboxState.PENDING.value,
                    )
                ).all()
                self._apply(connection, conn_id, routed_by, [inbox_event_from_row(row) for row in claimed])
                return self._load_batch(connection, conn_id, routed_by)
        except OperationalError as error:
            raise StoreUnavailable(f"cannot route events of connection {conn_id!r}: {error.orig}") from error

    def claimed_by(self, conn_id: str, routed_by: str) -> RoutingBatch:
        """Return the events that ``routed_by`` claimed earlier, without claiming anything new."""
        with self._engine.connect() as connection:
            return self._load_batch(connection, conn_id, routed_by)

    @staticmethod
    def _load_batch(connection: Connection, conn_id: str, routed_by: str) -> RoutingBatch:
        rows = connection.execute(
            select(*EVENT_COLUMNS)
            .where(inbox_event.c.conn_id == conn_id, inbox_event.c.routed_by == routed_by)
            .order_by(inbox_event.c.event_ts, inbox_event.c.id)
        ).all()
        events = [inbox_event_from_row(row) for row in rows]
        events.sort(key=lambda event: (event.event_ts, event.kind.precedence, event.id))

        meeting_ids = {event.meeting_id for event in events}
        statuses = connection.execute(
            select(ledger_meeting.c.meeting_id, ledger_meeting.c.status).where(
                ledger_meeting.c.conn_id == conn_id, ledger_meeting.c.meeting_id.in_(meeting_ids)
            )
        )
        return RoutingBatch(routed_by, events, {meeting_id: status for meeting_id, status in statuses})

    @staticmethod
    def _claim(connection: Connection, conn_id: str, routed_by: str, max_events: int) -> None:
        # The UPDATE is the transaction's first statement, so it takes the write lock before
        # anything is read, and two routers cannot claim the same row. A retry of the same claim
        # key tops its batch up to max_events instead of adding another max_events.
        already_claimed = (
            select(func.count())
            .select_from(inbox_event)
            .where(inbox_event.c.conn_id == conn_id, inbox_event.c.routed_by == routed_by)
            .scalar_subquery()
        )
        oldest_pending = (
            select(inbox_event.c.id)
            .where(
                inbox_event.c.conn_id == conn_id,
                inbox_event.c.state == InboxState.PENDING.value,
                inbox_event.c.routed_by.is_(None),
            )
            .order_by(inbox_event.c.id)
            .limit(case((already_claimed < max_events, max_events - already_claimed), else_=0))
        )
        connection.execute(
            update(inbox_event).where(inbox_event.c.id.in_(oldest_pending)).values(routed_by=routed_by)
        )

    def _apply(
        self, connection: Connection, conn_id: str, routed_by: str, events: Iterable[InboxEvent]
    ) -> None:
        now = utcnow()
        ordered = sorted(events, key=lambda event: (event.event_ts, event.kind.precedence, event.id))
        meetings: dict[str, MeetingState | None] = {}

        for event in ordered:
            if event.meeting_id not in meetings:
                meetings[event.meeting_id] = self._load_meeting(connection, conn_id, event.meeting_id)
            current = meetings[event.meeting_id]
            state = decide(current, event.kind, event.event_ts)

            if state is not InboxState.IGNORED and not self._record_event(
                connection, conn_id, routed_by, event, state
            ):
                state = InboxState.DUPLICATE
            if state is InboxState.ROUTED:
                meetings[event.meeting_id] = self._apply_to_meeting(connection, conn_id, current, event, now)

            connection.execute(
                update(inbox_event)
                .where(inbox_event.c.id == event.id)
                .values(state=state.value, routed_at=now)
            )
            log.info(
                "Routing event %s of meeting %s: %s (claimed by %s)",
                event.identity_key,
                event.meeting_id,
                state.value,
                routed_by,
            )

    @staticmethod
    def _record_event(
        connection: Connection, conn_id: str, routed_by: str, event: InboxEvent, state: InboxState
    ) -> bool:
        """Insert the event into the ledger's event log. Return ``False`` if it was there already."""
        try:
            with connection.begin_nested():
                connection.execute(
                    insert(ledger_event).values(
                        conn_id=conn_id,
                        identity_key=event.identity_key,
                        meeting_id=event.meeting_id,
                        kind=event.kind.value,
                        event_ts=event.event_ts,
                        outcome="applied" if state is InboxState.ROUTED else state.value,
                        routed_by=routed_by,
                        recorded_at=utcnow(),
                    )
                )
        except IntegrityError:
            return False
        return True

    @staticmethod
    def _load_meeting(connection: Connection, conn_id: str, meeting_id: str) -> MeetingState | None:
        row = connection.execute(
            select(ledger_meeting).where(
                ledger_meeting.c.conn_id == conn_id, ledger_meeting.c.meeting_id == meeting_id
            )
        ).first()
        return _meeting_from_row(row) if row else None

    @staticmethod
    def _apply_to_meeting(
        connection: Connection, conn_id: str, current: MeetingState | None, event: InboxEvent, now: datetime
    ) -> MeetingState:
        record = event.record
        custom_data = record.get("custom_data") or {}
        values: dict[str, Any] = {
            "status": _STATUS_BY_KIND[event.kind].value,
            "last_identity_key": event.identity_key,
            "last_kind": event.kind.value,
            "last_event_ts": event.event_ts,
            "updated_at": now,
        }
        if record.get("start_time"):
            values["start_time"] = datetime.fromisoformat(record["start_time"].replace("Z", "+00:00"))
        if record.get("end_time"):
            values["end_time"] = datetime.fromisoformat(record["end_time"].replace("Z", "+00:00"))
        if (record.get("scheduling_link") or {}).get("title"):
            values["scheduling_link_title"] = record["scheduling_link"]["title"]
        if custom_data.get("data"):
            values["custom_data"] = custom_data

        where = (ledger_meeting.c.conn_id == conn_id, ledger_meeting.c.meeting_id == event.meeting_id)
        if current is None:
            connection.execute(
                insert(ledger_meeting).values(
                    conn_id=conn_id, meeting_id=event.meeting_id, applied_count=1, **values
                )
            )
        else:
            connection.execute(
                update(ledger_meeting)
                .where(*where)
                .values(applied_count=ledger_meeting.c.applied_count + 1, **values)
            )
        return _meeting_from_row(connection.execute(select(ledger_meeting).where(*where)).one())

    def meetings(self, conn_id: str, meeting_id: str | None = None) -> list[MeetingState]:
        """Return the ledger state of every meeting of ``conn_id``, or of one meeting."""
        query = select(ledger_meeting).where(ledger_meeting.c.conn_id == conn_id)
        if meeting_id is not None:
            query = query.where(ledger_meeting.c.meeting_id == meeting_id)
        with self._engine.connect() as connection:
            rows = connection.execute(
                query.order_by(ledger_meeting.c.updated_at, ledger_meeting.c.meeting_id)
            )
            return [_meeting_from_row(row) for row in rows]
