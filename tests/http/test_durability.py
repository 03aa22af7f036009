"""An acknowledged delivery survives SIGKILL of the receiver right after its 200 response."""

from __future__ import annotations

import signal
import sqlite3

import requests
from receiver_harness import CONN_ID, event_headers, fixture_body

from airflow_provider_reclaim.store.inbox import Inbox, InboxState
from airflow_provider_reclaim.wire.signature import sign


def read_inbox_rows(database: str) -> list[tuple[str, str, int, bytes]]:
    """Read the inbox table with plain sqlite3, in a connection of its own."""
    connection = sqlite3.connect(database)
    try:
        return connection.execute(
            "SELECT identity_key, state, delivery_count, body FROM reclaim_inbox_event ORDER BY id"
        ).fetchall()
    finally:
        connection.close()


def test_accepted_event_survives_sigkill_and_restart(receiver_factory):
    environment = receiver_factory.environment
    body = fixture_body("created-observed.json")
    headers = event_headers(body, sign(body, environment.secret))

    server = receiver_factory.start()
    response = requests.post(
        server.webhook_url(), data=body, headers=headers, verify=str(server.certfile), timeout=30
    )
    exit_code = server.kill()

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert exit_code == -signal.SIGKILL

    rows = read_inbox_rows(str(environment.inbox_path))
    assert len(rows) == 1
    identity_key, state, delivery_count, stored_body = rows[0]
    assert identity_key == response.json()["identity_key"]
    assert state == InboxState.PENDING.value
    assert delivery_count == 1
    assert stored_body == body

    # A new server on the same inbox recognises the redelivery.
    restarted = receiver_factory.start()
    again = requests.post(
        restarted.webhook_url(), data=body, headers=headers, verify=str(restarted.certfile), timeout=30
    )

    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["identity_key"] == identity_key
    events = Inbox(environment.inbox_url).list_events(CONN_ID)
    assert len(events) == 1
    assert events[0].delivery_count == 2
    assert events[0].state is InboxState.PENDING


def test_sigterm_stops_server_cleanly(receiver_factory):
    server = receiver_factory.start()

    exit_code = server.stop()

    assert exit_code == 0
    log_text = server.log_text()
    assert "Starting the Reclaim webhook receiver" in log_text
    assert "TLS: self-signed certificate" in log_text
    assert "Stopped the Reclaim webhook receiver" in log_text
    assert "SIGTERM" in log_text
    assert "Traceback" not in log_text
    # The key stays readable by its owner only.
    assert (server.certfile.parent / "reclaim-receiver.key").stat().st_mode & 0o777 == 0o600


def test_unavailable_inbox_answers_503(receiver_factory):
    environment = receiver_factory.environment
    body = fixture_body("created-documented.json")
    headers = event_headers(body, sign(body, environment.secret))
    # A plain file where the inbox directory belongs: the database cannot be created.
    blocker = environment.inbox_path.parent
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")

    server = receiver_factory.start()
    refused = requests.post(
        server.webhook_url(), data=body, headers=headers, verify=str(server.certfile), timeout=30
    )

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "30"
    assert refused.json() == {"status": "unavailable", "reason": "inbox_unavailable"}
    assert "Cannot store a verified delivery" in server.log_text()

    # Once the database can be created, Reclaim's retry is accepted.
    blocker.unlink()
    retried = requests.post(
        server.webhook_url(), data=body, headers=headers, verify=str(server.certfile), timeout=30
    )

    assert retried.status_code == 200
    assert retried.json()["status"] == "accepted"
    assert len(Inbox(environment.inbox_url).list_events(CONN_ID)) == 1
