"""Tests of routing stored events through the per-meeting ledger, on real SQLite files."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from sqlalchemy import create_engine, delete

from airflow_provider_reclaim.store.inbox import Inbox, InboxState
from airflow_provider_reclaim.store.ledger import Ledger, MeetingState, MeetingStatus, decide
from airflow_provider_reclaim.store.schema import inbox_event
from airflow_provider_reclaim.wire.events import EventKind

CONN_ID = "reclaim_test"
MEETING = "Qx7LmN2pR4sT"
CREATED = "SchedulingLink.Meeting.Created"
UPDATED = "SchedulingLink.Meeting.Updated"
CANCELLED = "SchedulingLink.Meeting.Cancelled"
LIFECYCLE_ORDER = [EventKind.CREATED, EventKind.RESCHEDULED, EventKind.CANCELLED]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.fixture
def inbox(inbox_url) -> Inbox:
    return Inbox(inbox_url)


@pytest.fixture
def ledger(inbox_url) -> Ledger:
    return Ledger(inbox_url)


@pytest.fixture
def store(inbox, make_body):
    """Return a function that stores one event and returns its identity key."""

    def store_event(event_type: str, event_ts: str, meeting_id: str = MEETING, **meeting_fields) -> str:
        body = make_body(event_type, meeting_id, event_ts, **meeting_fields)
        return inbox.store_delivery(CONN_ID, body, {}).identity_key

    return store_event


def states_by_key(batch) -> dict[str, InboxState]:
    return {event.identity_key: event.state for event in batch.events}


def inbox_states(inbox: Inbox) -> dict[str, InboxState]:
    return {event.identity_key: event.state for event in inbox.list_events(CONN_ID)}


def only_meeting(ledger: Ledger, meeting_id: str = MEETING) -> MeetingState:
    (meeting,) = ledger.meetings(CONN_ID, meeting_id)
    return meeting


def meeting_state(status: MeetingStatus, kind: EventKind, last_event_ts: datetime) -> MeetingState:
    return MeetingState(
        conn_id=CONN_ID,
        meeting_id=MEETING,
        status=status,
        last_identity_key="key",
        last_kind=kind,
        last_event_ts=last_event_ts,
        start_time=None,
        end_time=None,
        scheduling_link_title=None,
        custom_data=None,
        applied_count=1,
        updated_at=last_event_ts,
    )


T0 = utc("2030-08-21T10:00:00")
T1 = utc("2030-08-21T11:00:00")
BOOKED_AT_T0 = meeting_state(MeetingStatus.BOOKED, EventKind.CREATED, T0)
RESCHEDULED_AT_T0 = meeting_state(MeetingStatus.RESCHEDULED, EventKind.RESCHEDULED, T0)
CANCELLED_AT_T0 = meeting_state(MeetingStatus.CANCELLED, EventKind.CANCELLED, T0)

ROUTED = InboxState.ROUTED
SUPERSEDED = InboxState.SUPERSEDED
IGNORED = InboxState.IGNORED

DECISIONS = {
    "first event of a meeting": (None, EventKind.CREATED, T0, ROUTED),
    "first event is a cancellation": (None, EventKind.CANCELLED, T0, ROUTED),
    "unknown kind": (None, EventKind.UNKNOWN, T0, IGNORED),
    "unknown kind on known meeting": (BOOKED_AT_T0, EventKind.UNKNOWN, T1, IGNORED),
    "later reschedule": (BOOKED_AT_T0, EventKind.RESCHEDULED, T1, ROUTED),
    "older creation": (RESCHEDULED_AT_T0, EventKind.CREATED, utc("2030-08-21T09:59:59"), SUPERSEDED),
    "same instant, reschedule after creation": (BOOKED_AT_T0, EventKind.RESCHEDULED, T0, ROUTED),
    "same instant, cancellation after reschedule": (RESCHEDULED_AT_T0, EventKind.CANCELLED, T0, ROUTED),
    "same instant, creation after reschedule": (RESCHEDULED_AT_T0, EventKind.CREATED, T0, SUPERSEDED),
    "same instant, same kind": (BOOKED_AT_T0, EventKind.CREATED, T0, SUPERSEDED),
    "later creation after cancellation": (CANCELLED_AT_T0, EventKind.CREATED, T1, SUPERSEDED),
    "later reschedule after cancellation": (CANCELLED_AT_T0, EventKind.RESCHEDULED, T1, SUPERSEDED),
    "later cancellation after cancellation": (CANCELLED_AT_T0, EventKind.CANCELLED, T1, SUPERSEDED),
}


@pytest.mark.parametrize(
    ("current", "kind", "event_ts", "expected"), DECISIONS.values(), ids=DECISIONS.keys()
)
def test_decide(current, kind, event_ts, expected):
    assert decide(current, kind, event_ts) is expected


def test_route_observed_lifecycle(inbox, ledger, load_body):
    for name in ("created-observed.json", "rescheduled-observed.json", "cancelled-observed.json"):
        inbox.store_delivery(CONN_ID, load_body(name), {})
    batch = ledger.route_pending(CONN_ID, "dag/run-1")
    meeting = only_meeting(ledger)

    assert [event.kind for event in batch.events] == LIFECYCLE_ORDER
    assert all(event.state is InboxState.ROUTED for event in batch.events)
    assert meeting.status is MeetingStatus.CANCELLED
    assert meeting.applied_count == 3
    assert meeting.start_time == utc("2030-09-01T08:00:00")
    assert meeting.end_time == utc("2030-09-01T08:30:00")
    assert meeting.scheduling_link_title == "Office hours"
    # Only the reschedule carried custom data, and the cancellation after it carried none.
    assert meeting.custom_data["data"] == {"utm_source": "linkedin", "utm_medium": "social"}


def test_route_duplicate_deliveries_once(inbox, ledger, make_body):
    for sent_at in ("2030-08-21T10:00:01Z", "2030-08-21T10:00:31Z", "2030-08-21T10:02:01Z"):
        body = make_body(CREATED, MEETING, "2030-08-21T10:00:00Z", top_level={"webhook_sent_at": sent_at})
        inbox.store_delivery(CONN_ID, body, {})
    batch = ledger.route_pending(CONN_ID, "dag/run-1")
    later = ledger.route_pending(CONN_ID, "dag/run-2")

    assert len(batch.events) == 1
    assert batch.events[0].state is InboxState.ROUTED
    assert batch.events[0].delivery_count == 3
    assert later.events == []
    assert only_meeting(ledger).applied_count == 1


def test_route_ledger_drops_recorded_key(inbox_url, inbox, ledger, store):
    # Deleting the inbox row, as a retention job would, lets the same event be stored again.
    # The ledger still remembers its identity key and must not apply it twice.
    key = store(CREATED, "2030-08-21T10:00:00Z")
    ledger.route_pending(CONN_ID, "dag/run-1")
    engine = create_engine(inbox_url)
    with engine.begin() as connection:
        connection.execute(delete(inbox_event).where(inbox_event.c.identity_key == key))
    engine.dispose()
    store(CREATED, "2030-08-21T10:00:00Z")
    batch = ledger.route_pending(CONN_ID, "dag/run-2")

    assert states_by_key(batch) == {key: InboxState.DUPLICATE}
    assert batch.records(EventKind.CREATED) == []
    assert only_meeting(ledger).applied_count == 1


def test_route_late_created_after_cancelled(ledger, inbox, store):
    cancelled = store(CANCELLED, "2030-08-23T11:15:00Z")
    first = ledger.route_pending(CONN_ID, "dag/run-1")
    created = store(CREATED, "2030-08-21T17:49:41Z")
    second = ledger.route_pending(CONN_ID, "dag/run-2")
    meeting = only_meeting(ledger)

    assert states_by_key(first) == {cancelled: InboxState.ROUTED}
    assert states_by_key(second) == {created: InboxState.SUPERSEDED}
    assert inbox_states(inbox)[created] is InboxState.SUPERSEDED
    assert meeting.status is MeetingStatus.CANCELLED
    assert meeting.last_identity_key == cancelled


def test_route_later_created_after_cancelled(ledger, store):
    store(CANCELLED, "2030-08-23T11:15:00Z")
    ledger.route_pending(CONN_ID, "dag/run-1")
    revived = store(CREATED, "2030-08-24T09:00:00Z")
    batch = ledger.route_pending(CONN_ID, "dag/run-2")

    assert states_by_key(batch) == {revived: InboxState.SUPERSEDED}
    assert only_meeting(ledger).status is MeetingStatus.CANCELLED


def test_route_updated_before_created_same_batch(ledger, store):
    updated = store(UPDATED, "2030-08-22T08:02:13Z", start_time="2030-09-01T08:00:00Z")
    created = store(CREATED, "2030-08-21T17:49:41Z", start_time="2030-08-31T19:30:00Z")
    batch = ledger.route_pending(CONN_ID, "dag/run-1")
    meeting = only_meeting(ledger)

    assert [event.identity_key for event in batch.events] == [created, updated]
    assert states_by_key(batch) == {created: InboxState.ROUTED, updated: InboxState.ROUTED}
    assert meeting.status is MeetingStatus.RESCHEDULED
    assert meeting.start_time == utc("2030-09-01T08:00:00")


def test_route_updated_before_created_separate_calls(ledger, store):
    updated = store(UPDATED, "2030-08-22T08:02:13Z", start_time="2030-09-01T08:00:00Z")
    first = ledger.route_pending(CONN_ID, "dag/run-1")
    created = store(CREATED, "2030-08-21T17:49:41Z", start_time="2030-08-31T19:30:00Z")
    second = ledger.route_pending(CONN_ID, "dag/run-2")
    meeting = only_meeting(ledger)

    assert states_by_key(first) == {updated: InboxState.ROUTED}
    assert states_by_key(second) == {created: InboxState.SUPERSEDED}
    assert meeting.status is MeetingStatus.RESCHEDULED
    assert meeting.start_time == utc("2030-09-01T08:00:00")
    assert meeting.applied_count == 1


TIE_ORDERS = {
    "stored cancelled first": (CANCELLED, UPDATED, CREATED),
    "stored created first": (CREATED, UPDATED, CANCELLED),
    "stored updated first": (UPDATED, CANCELLED, CREATED),
}


@pytest.mark.parametrize("order", TIE_ORDERS.values(), ids=TIE_ORDERS.keys())
def test_route_equal_event_ts_same_batch(ledger, store, order):
    keys = {event_type: store(event_type, "2030-08-22T08:00:00Z") for event_type in order}
    batch = ledger.route_pending(CONN_ID, "dag/run-1")
    meeting = only_meeting(ledger)

    assert meeting.status is MeetingStatus.CANCELLED
    assert meeting.last_identity_key == keys[CANCELLED]
    assert meeting.applied_count == 3
    assert set(states_by_key(batch).values()) == {InboxState.ROUTED}


@pytest.mark.parametrize("order", TIE_ORDERS.values(), ids=TIE_ORDERS.keys())
def test_batch_order_equal_event_ts(ledger, store, order):
    # RoutingBatch lists events in the order they were applied: by event_ts, then by rank.
    for event_type in order:
        store(event_type, "2030-08-22T08:00:00Z")
    batch = ledger.route_pending(CONN_ID, "dag/run-1")

    assert [event.kind for event in batch.events] == LIFECYCLE_ORDER


def test_route_equal_event_ts_cancelled_first(ledger, store):
    cancelled = store(CANCELLED, "2030-08-22T08:00:00Z")
    ledger.route_pending(CONN_ID, "dag/run-1")
    updated = store(UPDATED, "2030-08-22T08:00:00Z")
    created = store(CREATED, "2030-08-22T08:00:00Z")
    batch = ledger.route_pending(CONN_ID, "dag/run-2")
    meeting = only_meeting(ledger)

    assert states_by_key(batch) == {updated: InboxState.SUPERSEDED, created: InboxState.SUPERSEDED}
    assert meeting.status is MeetingStatus.CANCELLED
    assert meeting.last_identity_key == cancelled


def test_route_equal_event_ts_rescheduled_first(ledger, store):
    updated = store(UPDATED, "2030-08-22T08:00:00Z")
    ledger.route_pending(CONN_ID, "dag/run-1")
    created = store(CREATED, "2030-08-22T08:00:00Z")
    batch = ledger.route_pending(CONN_ID, "dag/run-2")

    assert states_by_key(batch) == {created: InboxState.SUPERSEDED}
    assert only_meeting(ledger).last_identity_key == updated


def test_route_unknown_type_never_claimed(ledger, inbox, store):
    unknown = store("SchedulingLink.Meeting.NoShow", "2030-08-22T08:00:00Z")
    batch = ledger.route_pending(CONN_ID, "dag/run-1")

    assert batch.events == []
    assert inbox_states(inbox)[unknown] is InboxState.IGNORED
    assert ledger.meetings(CONN_ID) == []


def test_route_same_claim_key_twice(ledger, store):
    created = store(CREATED, "2030-08-21T10:00:00Z")
    updated = store(UPDATED, "2030-08-21T11:00:00Z")
    first = ledger.route_pending(CONN_ID, "dag/run-1")
    meeting_after_first = only_meeting(ledger)
    second = ledger.route_pending(CONN_ID, "dag/run-1")
    meeting_after_second = only_meeting(ledger)

    assert [event.identity_key for event in first.events] == [created, updated]
    assert second.events == first.events
    assert meeting_after_second.applied_count == meeting_after_first.applied_count
    assert meeting_after_second.updated_at == meeting_after_first.updated_at


def test_route_same_claim_key_adds_new_pending(ledger, store):
    created = store(CREATED, "2030-08-21T10:00:00Z")
    first = ledger.route_pending(CONN_ID, "dag/run-1")
    updated = store(UPDATED, "2030-08-21T11:00:00Z")
    second = ledger.route_pending(CONN_ID, "dag/run-1")

    assert states_by_key(second) == {created: InboxState.ROUTED, updated: InboxState.ROUTED}
    assert second.events[0] == first.events[0]
    assert only_meeting(ledger).applied_count == 2


def test_route_second_caller_gets_nothing(ledger, store):
    store(CREATED, "2030-08-21T10:00:00Z")
    store(CREATED, "2030-08-21T10:05:00Z", meeting_id="another-meeting")
    first = ledger.route_pending(CONN_ID, "dag/run-1")
    second = ledger.route_pending(CONN_ID, "dag/run-2")

    assert len(first.events) == 2
    assert second.events == []
    assert second.routed_by == "dag/run-2"
    assert all(event.routed_by == "dag/run-1" for event in first.events)


def test_route_second_caller_gets_only_new(ledger, store):
    store(CREATED, "2030-08-21T10:00:00Z")
    ledger.route_pending(CONN_ID, "dag/run-1")
    updated = store(UPDATED, "2030-08-21T11:00:00Z")
    second = ledger.route_pending(CONN_ID, "dag/run-2")

    assert states_by_key(second) == {updated: InboxState.ROUTED}


def test_route_other_connection_untouched(ledger, inbox, make_body, store):
    store(CREATED, "2030-08-21T10:00:00Z")
    inbox.store_delivery("reclaim_other", make_body(CREATED, MEETING, "2030-08-21T10:00:00Z"), {})
    ledger.route_pending(CONN_ID, "dag/run-1")

    assert [event.state for event in inbox.list_events("reclaim_other")] == [InboxState.PENDING]
    assert ledger.meetings("reclaim_other") == []


def test_route_max_events(ledger, inbox, store):
    keys = [store(CREATED, f"2030-08-21T10:0{minute}:00Z", meeting_id=f"m-{minute}") for minute in range(5)]
    first = ledger.route_pending(CONN_ID, "dag/run-1", max_events=2)
    pending = [event.identity_key for event in inbox.list_events(CONN_ID, states={InboxState.PENDING})]
    second = ledger.route_pending(CONN_ID, "dag/run-2", max_events=2)

    assert [event.identity_key for event in first.events] == keys[:2]
    assert pending == keys[2:]
    assert [event.identity_key for event in second.events] == keys[2:4]


def test_route_max_events_on_retry(ledger, store):
    # A retried task reuses its claim key. Its batch must stay within max_events, because the
    # batch becomes mapped task instances, and Airflow fails a task that pushes more than
    # [core] max_map_length (default 1024) items to map over.
    for minute in range(5):
        store(CREATED, f"2030-08-21T10:0{minute}:00Z", meeting_id=f"m-{minute}")
    ledger.route_pending(CONN_ID, "dag/run-1", max_events=2)
    retry = ledger.route_pending(CONN_ID, "dag/run-1", max_events=2)

    assert len(retry.events) <= 2


def test_batch_records_by_kind(ledger, load_body, inbox):
    for name in ("created-observed.json", "rescheduled-observed.json", "created-documented.json"):
        inbox.store_delivery(CONN_ID, load_body(name), {})
    batch = ledger.route_pending(CONN_ID, "dag/run-1")
    created_records = batch.records(EventKind.CREATED)
    rescheduled_records = batch.records(EventKind.RESCHEDULED)

    assert sorted(record["meeting_id"] for record in created_records) == [
        "3c2b1a09-8f7e-4d6c-b5a4-392817160504",
        "Qx7LmN2pR4sT",
    ]
    assert [record["kind"] for record in rescheduled_records] == ["rescheduled"]
    assert batch.records(EventKind.CANCELLED) == []
    assert json.loads(json.dumps(created_records)) == created_records


def test_batch_records_skip_superseded(ledger, store):
    store(CANCELLED, "2030-08-23T11:15:00Z")
    ledger.route_pending(CONN_ID, "dag/run-1")
    store(CREATED, "2030-08-21T17:49:41Z")
    batch = ledger.route_pending(CONN_ID, "dag/run-2")

    assert len(batch.events) == 1
    assert batch.records(EventKind.CREATED) == []


def test_batch_summary(ledger, store):
    cancelled = store(CANCELLED, "2030-08-23T11:15:00Z")
    ledger.route_pending(CONN_ID, "dag/run-1")
    created = store(CREATED, "2030-08-21T17:49:41Z")
    other = store(CREATED, "2030-08-21T18:00:00Z", meeting_id="another-meeting")
    summary = ledger.route_pending(CONN_ID, "dag/run-2").summary()

    assert summary["routed_by"] == "dag/run-2"
    assert summary["events"] == 2
    assert summary["by_state"]["routed"] == [other]
    assert summary["by_state"]["superseded"] == [created]
    assert summary["by_state"]["duplicate"] == []
    assert "pending" not in summary["by_state"]
    assert cancelled not in json.dumps(summary)


def test_meetings_filter_and_fields(ledger, store):
    store(CREATED, "2030-08-21T10:00:00Z", custom_data={"data": {"utm_source": "newsletter"}, "errors": []})
    store(CREATED, "2030-08-21T10:05:00Z", meeting_id="another-meeting")
    ledger.route_pending(CONN_ID, "dag/run-1")
    everything = ledger.meetings(CONN_ID)
    meeting = only_meeting(ledger)

    assert {state.meeting_id for state in everything} == {"another-meeting", MEETING}
    assert meeting.status is MeetingStatus.BOOKED
    assert meeting.last_kind is EventKind.CREATED
    assert meeting.last_event_ts == utc("2030-08-21T10:00:00")
    assert meeting.custom_data["data"] == {"utm_source": "newsletter"}
    assert meeting.start_time == utc("2030-09-01T08:00:00")
    assert json.loads(json.dumps(meeting.to_json()))["status"] == "booked"
    assert ledger.meetings(CONN_ID, "no-such-meeting") == []
    assert ledger.meetings("reclaim_other") == []
