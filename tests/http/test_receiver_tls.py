"""Deliveries over real HTTPS to ``airflow-reclaim serve --self-signed`` on 127.0.0.1.

One server runs for the whole module, with the connections of ``receiver_harness``. Every test
checks the HTTP status, the JSON ``status`` or ``reason``, and what the inbox contains afterwards.
The last two tests check the whole module: no response was a 5xx, and the server log never
contains a secret, a signature or a booker's email address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from receiver_harness import (
    CONN_ID,
    DEMO_CONN_ID,
    HTTP_CONN_ID,
    RawResponse,
    ReceiverEnvironment,
    ReceiverProcess,
    event_headers,
    fixture_body,
    post_raw,
)
from sqlalchemy import select

from airflow_provider_reclaim.store.database import get_engine
from airflow_provider_reclaim.store.inbox import Inbox, InboxState
from airflow_provider_reclaim.store.schema import inbox_event, quarantine
from airflow_provider_reclaim.wire.signature import SIGNATURE_HEADER, sign

MAX_BODY_BYTES = 1024 * 1024

# Every response status of the module, checked by test_no_response_was_server_error.
RESPONSES: list[tuple[str, int]] = []
# Every correct signature sent, checked against the server log.
SIGNATURES: list[str] = []
# Every booker address sent, checked against the server log.
BOOKER_EMAILS = {"ada@example.org", "grace.hopper@example.net", "zoe.angstrom@example.org"}


# Helpers


def new_meeting_id() -> str:
    return f"http-test-{uuid.uuid4().hex[:12]}"


def signed(body: bytes, secret: str) -> str:
    """Return Reclaim's signature of ``body`` and remember it for the log check."""
    value = sign(body, secret)
    SIGNATURES.append(value)
    return value


def post(
    receiver: ReceiverProcess, body: bytes, headers: dict[str, str], conn_id: str = CONN_ID
) -> requests.Response:
    """POST with ``requests`` over TLS verified with the server's certificate."""
    response = requests.post(
        receiver.webhook_url(conn_id),
        data=body,
        headers=headers,
        verify=str(receiver.certfile),
        timeout=30,
        allow_redirects=False,
    )
    RESPONSES.append((f"POST {conn_id}", response.status_code))
    assert response.status_code < 500, response.text
    return response


def post_hostile(
    receiver: ReceiverProcess, body: bytes, headers: list[tuple[str, str | bytes]], **kwargs: Any
) -> RawResponse:
    response = post_raw(receiver, f"/reclaim/webhooks/{CONN_ID}", body, headers, **kwargs)
    RESPONSES.append(("POST raw", response.status))
    assert response.status < 500, response.payload
    return response


def events_of(environment: ReceiverEnvironment, meeting_id: str, conn_id: str = CONN_ID) -> list[Any]:
    return Inbox(environment.inbox_url).list_events(conn_id, meeting_id=meeting_id)


def stored_body(environment: ReceiverEnvironment, row_id: int) -> bytes:
    with get_engine(environment.inbox_url).connect() as connection:
        return connection.execute(select(inbox_event.c.body).where(inbox_event.c.id == row_id)).scalar_one()


def quarantine_rows(environment: ReceiverEnvironment) -> list[dict[str, Any]]:
    return Inbox(environment.inbox_url).list_quarantine(CONN_ID)


def quarantined_body(environment: ReceiverEnvironment, row_id: int) -> bytes:
    with get_engine(environment.inbox_url).connect() as connection:
        return connection.execute(select(quarantine.c.body).where(quarantine.c.id == row_id)).scalar_one()


def assert_nothing_stored(environment: ReceiverEnvironment, meeting_id: str, quarantined_before: int) -> None:
    for conn_id in (CONN_ID, DEMO_CONN_ID, HTTP_CONN_ID):
        assert events_of(environment, meeting_id, conn_id) == []
    assert len(quarantine_rows(environment)) == quarantined_before


@pytest.fixture
def environment(
    receiver_environment: ReceiverEnvironment, receiver: ReceiverProcess
) -> Iterator[ReceiverEnvironment]:
    """The module's environment, once its server is up and has created the inbox."""
    Inbox(receiver_environment.inbox_url)
    yield receiver_environment


# Accepted deliveries


def test_valid_signature_then_redelivery(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-documented.json", meeting_id)

    first = post(receiver, body, event_headers(body, signed(body, environment.secret)))

    assert first.status_code == 200
    assert first.json()["status"] == "accepted"
    assert meeting_id in first.json()["identity_key"]
    events = events_of(environment, meeting_id)
    assert len(events) == 1
    assert events[0].state is InboxState.PENDING
    assert events[0].delivery_count == 1
    assert stored_body(environment, events[0].id) == body

    # A retry carries a new webhook_sent_at but is the same event.
    retry = body.replace(
        b'"webhook_sent_at": "2030-04-26T14:30:01Z"', b'"webhook_sent_at": "2030-04-26T14:31:05Z"'
    )
    assert retry != body
    second = post(receiver, retry, event_headers(retry, signed(retry, environment.secret)))

    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    assert second.json()["identity_key"] == first.json()["identity_key"]
    events = events_of(environment, meeting_id)
    assert len(events) == 1
    assert events[0].delivery_count == 2
    assert events[0].state is InboxState.PENDING


def test_previous_secret_is_accepted(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id)

    response = post(receiver, body, event_headers(body, signed(body, environment.previous_secret)))

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    events = events_of(environment, meeting_id)
    assert len(events) == 1
    assert events[0].state is InboxState.PENDING


@pytest.mark.parametrize(
    "name_json",
    [
        pytest.param("Zo\u00eb \u00c5ngstr\u00f6m".encode(), id="raw-utf8"),
        pytest.param(b"Zo\\u00eb \\u00c5ngstr\\u00f6m", id="json-escapes"),
    ],
)
def test_non_ascii_body_signed_over_exact_bytes(receiver, environment, name_json):
    meeting_id = new_meeting_id()
    template = fixture_body("created-documented.json", meeting_id)
    booker = b'"name": "' + name_json + b'", "email": "zoe.angstrom@example.org"'
    body = template.replace(b'"name": "Ada Lovelace", "email": "ada@example.org"', booker)
    assert body != template

    response = post(receiver, body, event_headers(body, signed(body, environment.secret)))

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    events = events_of(environment, meeting_id)
    assert len(events) == 1
    assert events[0].record["attendee"]["name"] == "Zo\u00eb \u00c5ngstr\u00f6m"
    assert stored_body(environment, events[0].id) == body


@pytest.mark.parametrize("prefix", ["sha256=", ""], ids=["with-prefix", "bare"])
def test_hex_digest_is_accepted(receiver, environment, prefix):
    meeting_id = new_meeting_id()
    body = fixture_body("rescheduled-observed.json", meeting_id)
    hex_digest = hmac.new(environment.secret.encode(), body, hashlib.sha256).hexdigest()
    SIGNATURES.append(hex_digest)

    response = post(receiver, body, event_headers(body, prefix + hex_digest))

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    assert len(events_of(environment, meeting_id)) == 1


def test_unknown_event_type_is_stored_ignored(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id).replace(
        b"SchedulingLink.Meeting.Created", b"SchedulingLink.Meeting.Transferred"
    )

    response = post(receiver, body, event_headers(body, signed(body, environment.secret)))

    assert response.status_code == 200
    assert response.json()["status"] == "accepted"
    events = events_of(environment, meeting_id)
    assert len(events) == 1
    assert events[0].state is InboxState.IGNORED
    assert events[0].event_type == "SchedulingLink.Meeting.Transferred"


# Rejected signatures


def test_missing_signature_header(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id)
    quarantined_before = len(quarantine_rows(environment))

    response = post(receiver, body, event_headers(body, None))

    assert response.status_code == 401
    assert response.json() == {"status": "rejected", "reason": "missing_signature"}
    assert_nothing_stored(environment, meeting_id, quarantined_before)


def test_signature_with_another_secret(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id)
    quarantined_before = len(quarantine_rows(environment))

    response = post(receiver, body, event_headers(body, sign(body, "not-the-webhook-secret")))

    assert response.status_code == 401
    assert response.json() == {"status": "rejected", "reason": "signature_mismatch"}
    assert_nothing_stored(environment, meeting_id, quarantined_before)


def test_body_with_trailing_newline_after_signing(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id).rstrip(b"\n")
    quarantined_before = len(quarantine_rows(environment))

    response = post(receiver, body + b"\n", event_headers(body, signed(body, environment.secret)))

    assert response.status_code == 401
    assert response.json() == {"status": "rejected", "reason": "signature_mismatch"}
    assert_nothing_stored(environment, meeting_id, quarantined_before)


def test_body_reserialised_after_signing(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-documented.json", meeting_id)
    reserialised = json.dumps(json.loads(body)).encode()
    assert reserialised != body
    quarantined_before = len(quarantine_rows(environment))

    response = post(receiver, reserialised, event_headers(body, signed(body, environment.secret)))

    assert response.status_code == 401
    assert response.json() == {"status": "rejected", "reason": "signature_mismatch"}
    assert_nothing_stored(environment, meeting_id, quarantined_before)


HOSTILE_HEADERS = [
    pytest.param([(SIGNATURE_HEADER, "")], "malformed_signature", id="empty"),
    pytest.param([(SIGNATURE_HEADER, "no-secret-provided")], "malformed_signature", id="placeholder"),
    pytest.param(
        [(SIGNATURE_HEADER, "sha256=Zo\u00eb\u00c5".encode())], "malformed_signature", id="non-ascii-bytes"
    ),
    pytest.param([(SIGNATURE_HEADER, "sha256=" + "A" * 10 * 1024)], "malformed_signature", id="10kb"),
]


@pytest.mark.parametrize(("headers", "reason"), HOSTILE_HEADERS)
def test_hostile_signature_header(receiver, environment, headers, reason):
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id)
    quarantined_before = len(quarantine_rows(environment))

    response = post_hostile(receiver, body, [("Content-Type", "application/json"), *headers])

    assert response.status == 401
    assert response.payload == {"status": "rejected", "reason": reason}
    assert_nothing_stored(environment, meeting_id, quarantined_before)


def test_signature_header_sent_twice(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id)
    valid = signed(body, environment.secret)
    quarantined_before = len(quarantine_rows(environment))

    # Both copies are valid on their own: the repetition alone must be rejected.
    response = post_hostile(
        receiver,
        body,
        [("Content-Type", "application/json"), (SIGNATURE_HEADER, valid), (SIGNATURE_HEADER, valid)],
    )

    assert response.status == 401
    assert response.payload == {"status": "rejected", "reason": "malformed_signature"}
    assert_nothing_stored(environment, meeting_id, quarantined_before)


# Body size and Content-Length


def test_body_over_limit(receiver, environment):
    body = b'{"padding": "' + b"x" * MAX_BODY_BYTES + b'"}'
    quarantined_before = len(quarantine_rows(environment))

    response = post(receiver, body, event_headers(body, signed(body, environment.secret)))

    assert response.status_code == 413
    assert response.json() == {"status": "rejected", "reason": "body_too_large"}
    assert len(quarantine_rows(environment)) == quarantined_before


def test_chunked_body_over_limit(receiver, environment):
    # Without Content-Length the receiver must stop reading once the limit is passed.
    chunk = b"x" * (64 * 1024)

    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
            yield chunk

    quarantined_before = len(quarantine_rows(environment))

    response = post(
        receiver, chunks(), {"Content-Type": "application/json", SIGNATURE_HEADER: "sha256=" + "A" * 43 + "="}
    )

    assert response.status_code == 413
    assert response.json() == {"status": "rejected", "reason": "body_too_large"}
    assert len(quarantine_rows(environment)) == quarantined_before


def test_content_length_over_limit_with_small_body(receiver, environment):
    body = b"{}"
    quarantined_before = len(quarantine_rows(environment))

    response = post_hostile(
        receiver,
        body,
        [(SIGNATURE_HEADER, signed(body, environment.secret))],
        content_length=2 * MAX_BODY_BYTES,
    )

    assert response.status == 413
    assert response.payload == {"status": "rejected", "reason": "body_too_large"}
    assert len(quarantine_rows(environment)) == quarantined_before


def test_content_length_shorter_than_body(receiver, environment):
    # The server reads 10 bytes as the body and the rest as a malformed next request.
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id)
    quarantined_before = len(quarantine_rows(environment))

    response = post_hostile(
        receiver, body, [(SIGNATURE_HEADER, signed(body, environment.secret))], content_length=10
    )

    assert response.status in (400, 401)
    assert_nothing_stored(environment, meeting_id, quarantined_before)


def test_client_disconnect_mid_body_is_not_an_error(receiver, environment):
    context = ssl.create_default_context(cafile=str(receiver.certfile))
    raw = socket.create_connection(("127.0.0.1", receiver.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as connection:
        connection.sendall(
            f"POST /reclaim/webhooks/{CONN_ID} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nContent-Length: 100\r\n{SIGNATURE_HEADER}: sha256=abc\r\n\r\n{{}}".encode()
        )
        # The server waits for the 98 missing bytes. Nothing arrives before the client gives up.
        connection.settimeout(1)
        with pytest.raises(TimeoutError):
            connection.recv(1024)

    deadline = time.monotonic() + 5
    while (
        time.monotonic() < deadline
        and "disconnected before sending the whole body" not in receiver.log_text()
    ):
        time.sleep(0.1)
    assert "disconnected before sending the whole body" in receiver.log_text()
    assert "Exception in ASGI application" not in receiver.log_text()


# Quarantine


def test_empty_body_unsigned(receiver, environment):
    quarantined_before = len(quarantine_rows(environment))

    response = post(receiver, b"", {"Content-Type": "application/json"})

    assert response.status_code == 401
    assert response.json() == {"status": "rejected", "reason": "missing_signature"}
    assert len(quarantine_rows(environment)) == quarantined_before


def test_empty_body_signed(receiver, environment):
    quarantined_before = len(quarantine_rows(environment))

    response = post(
        receiver, b"", {"Content-Type": "application/json", SIGNATURE_HEADER: signed(b"", environment.secret)}
    )

    assert response.status_code == 202
    assert response.json()["status"] == "quarantined"
    rows = quarantine_rows(environment)
    assert len(rows) == quarantined_before + 1
    assert rows[-1]["body_bytes"] == 0


def test_signed_body_not_json(receiver, environment):
    body = b"this is not JSON {"
    quarantined_before = len(quarantine_rows(environment))

    response = post(
        receiver,
        body,
        {"Content-Type": "application/json", SIGNATURE_HEADER: signed(body, environment.secret)},
    )

    assert response.status_code == 202
    assert response.json()["status"] == "quarantined"
    assert "JSON" in response.json()["reason"]
    rows = quarantine_rows(environment)
    assert len(rows) == quarantined_before + 1
    assert rows[-1]["body_bytes"] == len(body)
    assert quarantined_body(environment, rows[-1]["id"]) == body


def test_signed_event_without_meeting_id(receiver, environment):
    body = fixture_body("created-observed.json").replace(b'"meeting_id": "Qx7LmN2pR4sT",', b"")
    assert b"meeting_id" not in body
    quarantined_before = len(quarantine_rows(environment))

    response = post(receiver, body, event_headers(body, signed(body, environment.secret)))

    assert response.status_code == 202
    assert response.json()["status"] == "quarantined"
    assert "meeting_id" in response.json()["reason"]
    rows = quarantine_rows(environment)
    assert len(rows) == quarantined_before + 1
    assert quarantined_body(environment, rows[-1]["id"]) == body


# Connections


def test_unknown_connection(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id)
    quarantined_before = len(quarantine_rows(environment))

    response = post(
        receiver, body, event_headers(body, signed(body, environment.secret)), conn_id="no_such_connection"
    )

    assert response.status_code == 404
    assert response.json() == {"status": "rejected", "reason": "unknown_connection"}
    assert events_of(environment, meeting_id, "no_such_connection") == []
    assert_nothing_stored(environment, meeting_id, quarantined_before)


def test_connection_of_another_type(receiver, environment):
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id)
    quarantined_before = len(quarantine_rows(environment))

    # Signed with the http connection's password, which must not act as a webhook secret.
    signature = signed(body, environment.http_password)
    response = post(receiver, body, event_headers(body, signature), conn_id=HTTP_CONN_ID)

    assert response.status_code == 404
    assert response.json() == {"status": "rejected", "reason": "unknown_connection"}
    assert_nothing_stored(environment, meeting_id, quarantined_before)
    # The http connection has no inbox_url, so a delivery would have gone to the default file.
    assert not (environment.home / "reclaim_inbox.db").exists()


def test_health(receiver):
    response = requests.get(f"{receiver.base_url}/reclaim/health", verify=str(receiver.certfile), timeout=10)
    RESPONSES.append(("GET health", response.status_code))

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_plain_http_to_tls_port(receiver, environment):
    # A client that forgets TLS must not reach the application.
    meeting_id = new_meeting_id()
    body = fixture_body("created-observed.json", meeting_id)
    quarantined_before = len(quarantine_rows(environment))

    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"http://127.0.0.1:{receiver.port}/reclaim/webhooks/{CONN_ID}",
            data=body,
            headers=event_headers(body, signed(body, environment.secret)),
            timeout=10,
        )
    assert_nothing_stored(environment, meeting_id, quarantined_before)


# Checks over the whole module. Keep these last: they read what the tests above left.


def test_no_response_was_server_error(receiver):
    assert RESPONSES
    server_errors = [(request, status) for request, status in RESPONSES if status >= 500]
    assert server_errors == []


def test_server_log_has_no_secrets_signatures_or_emails(receiver, environment):
    log_text = receiver.log_text()
    lowered = log_text.lower()

    assert "Stored event" in log_text
    assert environment.secret not in log_text
    assert environment.previous_secret not in log_text
    assert environment.http_password not in log_text
    assert SIGNATURES
    for value in SIGNATURES:
        assert value.removeprefix("sha256=") not in log_text
    for email in BOOKER_EMAILS:
        assert email not in lowered
