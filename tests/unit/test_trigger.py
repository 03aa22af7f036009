"""Tests of ReclaimInboxTrigger against a real SQLite inbox, driven through its async run loop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from airflow_provider_reclaim.store.inbox import Inbox
from airflow_provider_reclaim.store.ledger import Ledger
from airflow_provider_reclaim.triggers.inbox import ReclaimInboxTrigger, _InboxPoller

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reclaim"
CONN_ID = "reclaim_trigger_test"
SECRET = "trigger-test-secret"


@pytest.fixture
def inbox_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    connection = {"conn_type": "reclaim_webhook", "password": SECRET, "extra": {"inbox_url": url}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    return url


def store(inbox_url: str, *names: str) -> None:
    inbox = Inbox(inbox_url)
    for name in names:
        inbox.store_delivery(CONN_ID, (FIXTURES / name).read_bytes(), {})


async def collect(trigger: ReclaimInboxTrigger, count: int, timeout: float = 10.0) -> list[dict]:
    payloads = []

    async def consume() -> None:
        async for event in trigger.run():
            payloads.append(event.payload)
            if len(payloads) == count:
                return

    await asyncio.wait_for(consume(), timeout)
    return payloads


def test_serialize_has_only_primitives():
    trigger = ReclaimInboxTrigger(reclaim_conn_id=CONN_ID, poll_interval=0.5, resignal_interval=5)

    classpath, kwargs = trigger.serialize()

    assert classpath == "airflow_provider_reclaim.triggers.inbox.ReclaimInboxTrigger"
    assert kwargs == {
        "reclaim_conn_id": CONN_ID,
        "poll_interval": 0.5,
        "resignal_interval": 5,
        "max_signals_per_poll": 100,
    }
    assert ReclaimInboxTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_shared_stream_key_per_connection():
    first = ReclaimInboxTrigger(reclaim_conn_id="a")
    same = ReclaimInboxTrigger(reclaim_conn_id="a")
    other = ReclaimInboxTrigger(reclaim_conn_id="b")

    assert first.shared_stream_key() == same.shared_stream_key()
    assert first.shared_stream_key() != other.shared_stream_key()


def test_invalid_intervals_rejected():
    with pytest.raises(ValueError, match="poll_interval"):
        ReclaimInboxTrigger(poll_interval=0)
    with pytest.raises(ValueError, match="resignal_interval"):
        ReclaimInboxTrigger(poll_interval=2, resignal_interval=1)


async def test_signals_each_pending_event(inbox_url: str):
    store(inbox_url, "created-observed.json", "rescheduled-observed.json")
    trigger = ReclaimInboxTrigger(reclaim_conn_id=CONN_ID, poll_interval=0.1, resignal_interval=60)

    payloads = await collect(trigger, 2)

    assert [payload["signal"] for payload in payloads] == ["new", "new"]
    assert [payload["event"]["kind"] for payload in payloads] == ["created", "rescheduled"]
    assert all(payload["conn_id"] == CONN_ID for payload in payloads)
    assert all(payload["pending_count"] == 2 for payload in payloads)


async def test_payload_has_no_personal_data(inbox_url: str):
    store(inbox_url, "created-observed.json")
    trigger = ReclaimInboxTrigger(reclaim_conn_id=CONN_ID, poll_interval=0.1, resignal_interval=60)

    (payload,) = await collect(trigger, 1)
    text = json.dumps(payload).lower()

    assert "grace.hopper@example.net" not in text
    assert "grace hopper" not in text
    assert "hal@example.com" not in text
    assert SECRET not in text
    assert payload["event"]["meeting_id"] == "Qx7LmN2pR4sT"


async def test_pending_event_signalled_again(inbox_url: str):
    store(inbox_url, "created-documented.json")
    trigger = ReclaimInboxTrigger(reclaim_conn_id=CONN_ID, poll_interval=0.1, resignal_interval=0.3)

    payloads = await collect(trigger, 3)

    assert [payload["signal"] for payload in payloads] == ["new", "retry", "retry"]
    assert len({payload["event"]["identity_key"] for payload in payloads}) == 1


async def test_routed_events_not_signalled(inbox_url: str):
    store(inbox_url, "created-observed.json")
    Ledger(inbox_url).route_pending(CONN_ID, "dag/run-1")
    store(inbox_url, "rescheduled-observed.json")
    trigger = ReclaimInboxTrigger(reclaim_conn_id=CONN_ID, poll_interval=0.1, resignal_interval=0.3)

    payloads = await collect(trigger, 2)

    assert {payload["event"]["kind"] for payload in payloads} == {"rescheduled"}


async def test_restarted_trigger_signals_pending_again(inbox_url: str):
    store(inbox_url, "created-documented.json")
    first = await collect(
        ReclaimInboxTrigger(reclaim_conn_id=CONN_ID, poll_interval=0.1, resignal_interval=60), 1
    )

    restarted = await collect(
        ReclaimInboxTrigger(reclaim_conn_id=CONN_ID, poll_interval=0.1, resignal_interval=60), 1
    )

    assert first[0]["signal"] == "new"
    assert restarted[0]["signal"] == "new"
    assert restarted[0]["event"]["identity_key"] == first[0]["event"]["identity_key"]


async def test_unreadable_inbox_keeps_polling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the inbox directory should be")
    url = f"sqlite:///{blocker / 'inbox.db'}"
    connection = {"conn_type": "reclaim_webhook", "password": SECRET, "extra": {"inbox_url": url}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(connection))
    trigger = ReclaimInboxTrigger(reclaim_conn_id=CONN_ID, poll_interval=0.05, resignal_interval=60)

    with pytest.raises(asyncio.TimeoutError):
        await collect(trigger, 1, timeout=0.5)


def _store_meetings(inbox_url: str, count: int) -> None:
    template = json.loads((FIXTURES / "created-documented.json").read_text(encoding="utf-8"))
    inbox = Inbox(inbox_url)
    for index in range(count):
        template["meeting"]["meeting_id"] = f"backlog-{index}"
        inbox.store_delivery(CONN_ID, json.dumps(template).encode("utf-8"), {})


def test_backlog_signalled_across_polls(inbox_url: str):
    _store_meetings(inbox_url, 5)
    poller = _InboxPoller(CONN_ID, inbox_url, resignal_interval=60, max_signals_per_poll=2)

    rounds = [[signal["event"]["meeting_id"] for signal in poller.poll()] for _ in range(4)]

    assert rounds == [["backlog-0", "backlog-1"], ["backlog-2", "backlog-3"], ["backlog-4"], []]


def test_pending_ids_and_get_events(inbox_url: str):
    _store_meetings(inbox_url, 3)
    inbox = Inbox(inbox_url)
    Ledger(inbox_url).route_pending(CONN_ID, "dag/run-1", max_events=1)

    pending = inbox.pending_ids(CONN_ID)
    events = inbox.get_events(CONN_ID, pending)

    assert len(pending) == 2
    assert [event.id for event in events] == pending
    assert [event.meeting_id for event in events] == ["backlog-1", "backlog-2"]
    assert inbox.get_events("another_connection", pending) == []
    assert inbox.get_events(CONN_ID, []) == []
