"""Tests of the durable inbox on real SQLite files."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest
from sqlalchemy import create_engine, select

from airflow_provider_reclaim.store.database import StoreUnavailable
from airflow_provider_reclaim.store.inbox import DeliveryOutcome, Inbox, InboxState
from airflow_provider_reclaim.store.schema import inbox_event, quarantine
from airflow_provider_reclaim.wire.events import EventKind

CONN_ID = "reclaim_test"
CREATED = "SchedulingLink.Meeting.Created"
UPDATED = "SchedulingLink.Meeting.Updated"
NO_SHOW = "SchedulingLink.Meeting.NoShow"
HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "Reclaim-Webhooks/1.0",
    "X-Reclaim-Api-Version": "v2026-04-13",
    "X-Reclaim-Webhook-Type": "SchedulingLink.Meeting.Created",
    "X-Reclaim-Signature-256": "sha256=c2lnbmF0dXJlLW5vdC1rZXB0LWluLXRoZS1pbmJveA==",
}


def read_rows(url: str, table) -> list:
    """Read every row of ``table`` with a separate engine, as another process would."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(table).order_by(table.c.id)).all()
    finally:
        engine.dispose()


def with_delivery_fields(body: bytes, webhook_sent_at: str, request_id: str) -> bytes:
    document = json.loads(body)
    document["webhook_sent_at"] = webhook_sent_at
    document["request_id"] = request_id
    return json.dumps(document).encode("utf-8")


@pytest.fixture
def inbox(inbox_url) -> Inbox:
    return Inbox(inbox_url)


@pytest.fixture
def created(load_body) -> bytes:
    return load_body("created-observed.json")


def test_store_accepted(inbox, inbox_url, created):
    stored = inbox.store_delivery(CONN_ID, created, HEADERS)
    rows = read_rows(inbox_url, inbox_event)

    assert stored.outcome is DeliveryOutcome.ACCEPTED
    assert stored.kind is EventKind.CREATED
    assert stored.row_id == rows[0].id
    assert len(rows) == 1
    assert rows[0].state == "pending"
    assert rows[0].delivery_count == 1
    assert rows[0].body == created


def test_store_duplicate(inbox, inbox_url, created):
    first = inbox.store_delivery(CONN_ID, created, HEADERS)
    second = inbox.store_delivery(CONN_ID, created, HEADERS)
    rows = read_rows(inbox_url, inbox_event)

    assert second.outcome is DeliveryOutcome.DUPLICATE
    assert second.row_id == first.row_id
    assert second.identity_key == first.identity_key
    assert len(rows) == 1
    assert rows[0].delivery_count == 2


def test_store_retry_with_new_delivery_fields(inbox, inbox_url, created):
    retry = with_delivery_fields(created, "2030-08-21T17:52:00Z", "9b8a7c6d-0000-4000-8000-000000000001")
    inbox.store_delivery(CONN_ID, created, HEADERS)
    stored = inbox.store_delivery(CONN_ID, retry, HEADERS)
    rows = read_rows(inbox_url, inbox_event)

    assert stored.outcome is DeliveryOutcome.DUPLICATE
    assert len(rows) == 1
    assert rows[0].delivery_count == 2
    assert rows[0].body == created


def test_store_same_event_other_connection(inbox, inbox_url, created):
    first = inbox.store_delivery(CONN_ID, created, HEADERS)
    second = inbox.store_delivery("reclaim_other", created, HEADERS)

    assert first.outcome is DeliveryOutcome.ACCEPTED
    assert second.outcome is DeliveryOutcome.ACCEPTED
    assert len(read_rows(inbox_url, inbox_event)) == 2


def test_store_concurrent_same_event(inbox, inbox_url, created):
    thread_count = 8
    start = threading.Barrier(thread_count)
    outcomes: list[DeliveryOutcome] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def deliver() -> None:
        start.wait()
        try:
            outcome = inbox.store_delivery(CONN_ID, created, HEADERS).outcome
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            with lock:
                errors.append(error)
            return
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=deliver) for _ in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    rows = read_rows(inbox_url, inbox_event)

    assert errors == []
    assert Counter(outcomes) == {DeliveryOutcome.ACCEPTED: 1, DeliveryOutcome.DUPLICATE: thread_count - 1}
    assert len(rows) == 1
    assert rows[0].delivery_count == thread_count


def missing_meeting_id(body: bytes) -> bytes:
    document = json.loads(body)
    del document["meeting"]["meeting_id"]
    return json.dumps(document).encode("utf-8")


QUARANTINE_BODIES = {
    "not JSON": lambda created: b"<html><body>502 Bad Gateway</body></html>",
    "empty": lambda created: b"",
    "missing meeting_id": missing_meeting_id,
}


@pytest.mark.parametrize("make_bad_body", QUARANTINE_BODIES.values(), ids=QUARANTINE_BODIES.keys())
def test_store_quarantine(inbox, inbox_url, created, make_bad_body):
    bad_body = make_bad_body(created)
    stored = inbox.store_delivery(CONN_ID, bad_body, HEADERS)
    quarantined = read_rows(inbox_url, quarantine)

    assert stored.outcome is DeliveryOutcome.QUARANTINED
    assert stored.identity_key is None
    assert stored.reason
    assert len(quarantined) == 1
    assert quarantined[0].body == bad_body
    assert quarantined[0].conn_id == CONN_ID
    assert read_rows(inbox_url, inbox_event) == []


def test_store_quarantine_reason_names_field(inbox, created):
    stored = inbox.store_delivery(CONN_ID, missing_meeting_id(created), HEADERS)

    assert "meeting.meeting_id" in stored.reason


def test_list_quarantine(inbox, created):
    bad_body = missing_meeting_id(created)
    stored = inbox.store_delivery(CONN_ID, bad_body, HEADERS)
    inbox.store_delivery("reclaim_other", b"", HEADERS)
    listed = inbox.list_quarantine(CONN_ID)

    assert len(listed) == 1
    assert listed[0]["id"] == stored.row_id
    assert listed[0]["body_bytes"] == len(bad_body)
    assert listed[0]["reason"] == stored.reason


def test_store_unknown_type_ignored(inbox, make_body):
    body = make_body(NO_SHOW, "m-unknown", "2030-08-21T17:49:41Z")
    stored = inbox.store_delivery(CONN_ID, body, HEADERS)
    events = inbox.list_events(CONN_ID)

    assert stored.outcome is DeliveryOutcome.ACCEPTED
    assert stored.kind is EventKind.UNKNOWN
    assert len(events) == 1
    assert events[0].state is InboxState.IGNORED


def test_list_events_filters(inbox, make_body):
    inbox.store_delivery(CONN_ID, make_body(CREATED, "m-1", "2030-08-21T10:00:00Z"), {})
    inbox.store_delivery(CONN_ID, make_body(CREATED, "m-2", "2030-08-21T10:01:00Z"), {})
    inbox.store_delivery(CONN_ID, make_body(NO_SHOW, "m-1", "2030-08-21T10:02:00Z"), {})
    inbox.store_delivery(CONN_ID, make_body(UPDATED, "m-1", "2030-08-21T10:03:00Z"), {})
    inbox.store_delivery("reclaim_other", make_body(CREATED, "m-9", "2030-08-21T10:04:00Z"), {})
    everything = inbox.list_events(CONN_ID)
    ids = [event.id for event in everything]

    assert [event.meeting_id for event in everything] == ["m-1", "m-2", "m-1", "m-1"]
    assert ids == sorted(ids)
    assert [e.meeting_id for e in inbox.list_events(CONN_ID, meeting_id="m-2")] == ["m-2"]
    assert [e.kind for e in inbox.list_events(CONN_ID, states={InboxState.IGNORED})] == [EventKind.UNKNOWN]
    assert len(inbox.list_events(CONN_ID, states={InboxState.PENDING})) == 3
    assert [e.id for e in inbox.list_events(CONN_ID, after_id=ids[1])] == ids[2:]
    assert [e.id for e in inbox.list_events(CONN_ID, limit=2)] == ids[:2]
    assert len(inbox.list_events(CONN_ID, meeting_id="m-1", states={InboxState.PENDING})) == 2
    assert [e.meeting_id for e in inbox.list_events("reclaim_other")] == ["m-9"]
    assert inbox.list_events("reclaim_missing") == []


def test_list_events_fields(inbox, created):
    inbox.store_delivery(CONN_ID, created, HEADERS)
    inbox.store_delivery(CONN_ID, created, HEADERS)
    (event,) = inbox.list_events(CONN_ID)

    assert event.conn_id == CONN_ID
    assert event.meeting_id == "Qx7LmN2pR4sT"
    assert event.kind is EventKind.CREATED
    assert event.delivery_count == 2
    assert event.event_ts.utcoffset().total_seconds() == 0
    assert event.record["attendee"]["email"] == "grace.hopper@example.net"
    assert json.loads(json.dumps(event.to_json()))["state"] == "pending"


def test_count_by_state(inbox, make_body):
    inbox.store_delivery(CONN_ID, make_body(CREATED, "m-1", "2030-08-21T10:00:00Z"), {})
    inbox.store_delivery(CONN_ID, make_body(NO_SHOW, "m-1", "2030-08-21T10:02:00Z"), {})

    assert inbox.count_by_state(CONN_ID) == {"pending": 1, "ignored": 1}


def test_kept_headers_exclude_signature(inbox, inbox_url, created):
    inbox.store_delivery(CONN_ID, created, HEADERS)
    inbox.store_delivery(CONN_ID, b"not json", HEADERS)
    stored_header_sets = [row.headers for row in read_rows(inbox_url, inbox_event)]
    stored_header_sets += [row.headers for row in read_rows(inbox_url, quarantine)]

    assert len(stored_header_sets) == 2
    for headers in stored_header_sets:
        assert "x-reclaim-signature-256" not in {name.lower() for name in headers}
        assert HEADERS["X-Reclaim-Signature-256"] not in headers.values()
        assert headers["x-reclaim-webhook-type"] == "SchedulingLink.Meeting.Created"
        assert headers["content-type"] == "application/json"


def test_kept_headers_exclude_credentials(inbox, inbox_url, created):
    headers = HEADERS | {"Authorization": "Bearer abc.def", "Cookie": "session=xyz"}
    inbox.store_delivery(CONN_ID, created, headers)
    (row,) = read_rows(inbox_url, inbox_event)

    assert "authorization" not in row.headers
    assert "cookie" not in row.headers


def test_store_unavailable_directory_at_path(tmp_path):
    database_path = tmp_path / "inbox.db"
    database_path.mkdir()

    with pytest.raises(StoreUnavailable):
        Inbox(f"sqlite:///{database_path}")
    assert list(database_path.iterdir()) == []


def test_store_unavailable_file_at_parent(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the inbox directory should be")

    with pytest.raises(StoreUnavailable):
        Inbox(f"sqlite:///{blocker / 'inbox.db'}")
    assert blocker.read_text() == "a file where the inbox directory should be"


def read_only_url(tmp_path) -> str:
    """Return a SQLite URI URL that opens ``inbox.db`` read-only, even for root."""
    return f"sqlite:///file:{tmp_path / 'inbox.db'}?mode=ro&uri=true"


@pytest.fixture
def read_only_inbox(inbox_url, tmp_path, created, monkeypatch) -> Inbox:
    """An inbox opened read-only over a database that already contains one event."""
    Inbox(inbox_url).store_delivery(CONN_ID, created, HEADERS)
    # Run from tmp_path, so that anything created relative to the working directory stays there.
    monkeypatch.chdir(tmp_path)
    return Inbox(read_only_url(tmp_path))


def test_uri_url_creates_no_directory(tmp_path, monkeypatch, created):
    Inbox(f"sqlite:///{tmp_path / 'inbox.db'}").store_delivery(CONN_ID, created, HEADERS)
    working_directory = tmp_path / "cwd"
    working_directory.mkdir()
    monkeypatch.chdir(working_directory)

    Inbox(read_only_url(tmp_path))

    assert list(working_directory.iterdir()) == []


def test_store_unavailable_read_only(read_only_inbox, inbox_url, make_body):
    cancelled = make_body("SchedulingLink.Meeting.Cancelled", "Qx7LmN2pR4sT", "2030-08-23T11:15:00Z")

    with pytest.raises(StoreUnavailable):
        read_only_inbox.store_delivery(CONN_ID, cancelled, HEADERS)
    rows = read_rows(inbox_url, inbox_event)
    assert len(rows) == 1
    assert rows[0].event_type == "SchedulingLink.Meeting.Created"


def test_store_unavailable_read_only_duplicate(read_only_inbox, inbox_url, created):
    with pytest.raises(StoreUnavailable):
        read_only_inbox.store_delivery(CONN_ID, created, HEADERS)
    rows = read_rows(inbox_url, inbox_event)
    assert len(rows) == 1
    assert rows[0].delivery_count == 1


def test_store_unavailable_read_only_quarantine(read_only_inbox, inbox_url):
    with pytest.raises(StoreUnavailable):
        read_only_inbox.store_delivery(CONN_ID, b"not json", HEADERS)
    assert read_rows(inbox_url, quarantine) == []


def test_store_reopened_file_keeps_events(tmp_path, created):
    # A second URL spelling of the same file gets its own engine, like a second process.
    first = Inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    first.store_delivery(CONN_ID, created, HEADERS)
    second = Inbox(f"sqlite:///{tmp_path}/./inbox.db")
    stored = second.store_delivery(CONN_ID, created, HEADERS)

    assert stored.outcome is DeliveryOutcome.DUPLICATE
    assert second.list_events(CONN_ID)[0].delivery_count == 2
