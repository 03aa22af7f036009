"""Tests of the Reclaim simulator: scenario events, delivery plans and the HTTP sender.

Sender tests run against HTTP and HTTPS servers that each test starts on 127.0.0.1 with
port 0, and the fixture stops them when the test ends, also after a failure.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pydantic
import pytest

from airflow_provider_reclaim.receiver.tls import write_self_signed_certificate
from airflow_provider_reclaim.simulator import (
    DOCUMENTED_API_VERSION,
    EVENT_CANCELLED,
    EVENT_CREATED,
    EVENT_TYPES,
    EVENT_UPDATED,
    OBSERVED_API_VERSION,
    USER_AGENT,
    Category,
    Delivery,
    EventKey,
    Outcome,
    PlanOptions,
    Scenario,
    SimulatedEvent,
    build_plan,
    deliveries_from_file,
    generate_events,
    parse_retry_after,
    plan_scenario,
    send,
)
from airflow_provider_reclaim.simulator.events import parse_instant
from airflow_provider_reclaim.wire.signature import (
    SIGNATURE_HEADER,
    SignatureError,
    SignatureMismatch,
    verify,
)

SECRET = "simulator-test-secret"

EXAMPLE_EMAIL = re.compile(r"^[^@\s]+@example\.(com|org|net)$", re.IGNORECASE)
SECONDS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
MILLISECONDS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
OFFSET_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

# Enough meetings that every random variation appears at least once for this seed.
RICH_SCENARIO = Scenario(seed=11, meetings=60)


# ---------------------------------------------------------------------------------------
# Checks of one event body against the wire format
# ---------------------------------------------------------------------------------------


def _emails_in(body: dict[str, Any]) -> list[str]:
    meeting = body["meeting"]
    attendee = meeting["attendee"]
    emails = [participant["email"] for participant in meeting["participants"]]
    emails.append(attendee.get("email") or attendee.get("attendee_email"))
    if meeting.get("ccs"):
        emails.extend(address.strip() for address in meeting["ccs"].split(","))
    return emails


def _check_documented(body: dict[str, Any]) -> None:
    meeting = body["meeting"]
    assert body["api_version"] == DOCUMENTED_API_VERSION
    assert SECONDS_UTC.match(body["event_ts"])
    assert SECONDS_UTC.match(body["webhook_sent_at"])
    assert UUID.match(body["request_id"])
    assert set(meeting["attendee"]) == {"name", "email"}
    assert all(set(participant) == {"name", "email"} for participant in meeting["participants"])
    assert SECONDS_UTC.match(meeting["start_time"])
    assert SECONDS_UTC.match(meeting["end_time"])
    assert UUID.match(meeting["scheduling_link_id"])
    assert UUID.match(meeting["meeting_id"])
    assert "custom_data" in meeting
    assert "cancellation_message" not in body


def _check_observed(body: dict[str, Any]) -> None:
    meeting = body["meeting"]
    attendee = meeting["attendee"]
    assert body["api_version"] == OBSERVED_API_VERSION
    assert MILLISECONDS_UTC.match(body["event_ts"])
    assert ("webhook_sent_at" in body) == ("request_id" in body)
    assert set(attendee) == {"attendee_email", "attendee_name", "attendee_zone_id"}
    assert set(attendee["attendee_zone_id"]) == {"id", "display_name", "abbreviation"}
    assert [participant["is_host"] for participant in meeting["participants"]][0] is True
    assert all(isinstance(participant["user_id"], str) for participant in meeting["participants"])
    for name in ("start_time", "end_time"):
        assert SECONDS_UTC.match(meeting[name]) or OFFSET_TIME.match(meeting[name])
    assert isinstance(meeting["ccs"], str)
    assert isinstance(meeting["message"], str)
    assert isinstance(meeting["meeting_location"], dict)
    assert ("cancellation_message" in body) == (body["type"] == EVENT_CANCELLED)


def check_event_body(body: dict[str, Any]) -> None:
    """Assert that one body follows the documented or the observed payload shape."""
    meeting = body["meeting"]
    assert body["type"] in EVENT_TYPES
    assert parse_instant(body["event_ts"]) is not None
    assert parse_instant(meeting["end_time"]) > parse_instant(meeting["start_time"])
    assert all(EXAMPLE_EMAIL.match(email) for email in _emails_in(body)), _emails_in(body)
    assert meeting["scheduling_link_title"]
    assert isinstance(meeting["scheduling_link_description"], str)

    if "meeting_url" in meeting:
        assert meeting["meeting_url"].startswith("https://meet.example.com/")
    if "custom_data" in meeting:
        custom_data = meeting["custom_data"]
        assert set(custom_data) == {"data", "errors"}
        assert len(custom_data["data"]) <= 5
        assert set(custom_data["errors"]) <= {"TRUNCATED", "UNSERIALIZABLE"}

    if body["api_version"] == DOCUMENTED_API_VERSION:
        _check_documented(body)
    else:
        _check_observed(body)


# ---------------------------------------------------------------------------------------
# Scenario and events
# ---------------------------------------------------------------------------------------


def test_events_same_seed_same_bytes() -> None:
    first = [event.encode() for event in generate_events(Scenario(seed=7))]
    second = [event.encode() for event in generate_events(Scenario(seed=7))]
    other_seed = [event.encode() for event in generate_events(Scenario(seed=8))]

    assert first == second
    assert first != other_seed


def test_plan_same_seed_same_deliveries() -> None:
    first = plan_scenario(Scenario(seed=7))
    second = plan_scenario(Scenario(seed=7))

    assert [(d.label, d.body, d.expected, d.signed_body) for d in first] == [
        (d.label, d.body, d.expected, d.signed_body) for d in second
    ]


def test_events_follow_wire_rules() -> None:
    for event in generate_events(RICH_SCENARIO):
        body = json.loads(event.encode())

        assert body == event.body
        check_event_body(body)
        assert event.key == EventKey(body["type"], body["meeting"]["meeting_id"], body["event_ts"])


def test_meeting_life_is_ordered() -> None:
    by_meeting: dict[str, list[SimulatedEvent]] = {}
    for event in generate_events(RICH_SCENARIO):
        by_meeting.setdefault(event.meeting_id, []).append(event)

    assert len(by_meeting) == RICH_SCENARIO.meetings
    for meeting_events in by_meeting.values():
        types = [event.type for event in meeting_events]
        instants = [parse_instant(event.event_ts) for event in meeting_events]
        starts = [parse_instant(event.body["meeting"]["start_time"]) for event in meeting_events]

        assert types[0] == EVENT_CREATED
        assert types.count(EVENT_CREATED) == 1
        assert types.count(EVENT_UPDATED) <= RICH_SCENARIO.max_updates
        assert EVENT_CANCELLED not in types[:-1]
        assert instants == sorted(instants)
        assert len(set(instants)) == len(instants)
        assert len({event.shape for event in meeting_events}) == 1
        for position, event_type in enumerate(types):
            if event_type == EVENT_UPDATED:
                assert starts[position] != starts[position - 1]
            if event_type == EVENT_CANCELLED:
                assert starts[position] == starts[position - 1]


def test_events_sorted_by_event_ts() -> None:
    instants = [parse_instant(event.event_ts) for event in generate_events(RICH_SCENARIO)]

    assert instants == sorted(instants)


def test_scenario_covers_payload_variations() -> None:
    events = generate_events(RICH_SCENARIO)
    bodies = [event.body for event in events]
    observed = [body for body in bodies if body["api_version"] == OBSERVED_API_VERSION]
    observed_times = [body["meeting"]["start_time"] for body in observed]
    names = [
        body["meeting"]["attendee"].get("name") or body["meeting"]["attendee"]["attendee_name"]
        for body in bodies
    ]
    custom_data = [body["meeting"]["custom_data"] for body in bodies if "custom_data" in body["meeting"]]

    assert {event.shape for event in events} == {"documented", "observed"}
    assert {body["type"] for body in bodies} == set(EVENT_TYPES)
    assert any(time_text.endswith("Z") for time_text in observed_times)
    assert any(OFFSET_TIME.match(time_text) for time_text in observed_times)
    assert any("custom_data" not in body["meeting"] for body in observed)
    assert any("webhook_sent_at" not in body for body in observed)
    assert any(not name.isascii() for name in names)
    assert any("TRUNCATED" in data["errors"] for data in custom_data)
    assert {data["data"].get("utm_campaign") for data in custom_data} >= {
        campaign.utm_campaign for campaign in RICH_SCENARIO.campaigns
    }
    assert len({body["meeting"]["scheduling_link_title"] for body in bodies}) == RICH_SCENARIO.links


def test_scenario_loads_from_json_file(tmp_path: Path) -> None:
    path = tmp_path / "scenario.json"
    path.write_text(
        json.dumps(
            {
                "seed": 3,
                "meetings": 5,
                "links": 2,
                "campaigns": [{"utm_source": "podcast", "utm_campaign": "episode-12"}],
                "start": "2031-01-05T09:00:00Z",
                "plan": {"duplicates": 1, "out_of_order": 0, "burst": 2},
            }
        ),
        encoding="utf-8",
    )

    scenario = Scenario.from_json_file(path)

    assert scenario.seed == 3
    assert scenario.meetings == 5
    assert scenario.campaigns[0].custom_data() == {"utm_source": "podcast", "utm_campaign": "episode-12"}
    assert scenario.start == datetime(2031, 1, 5, 9, tzinfo=timezone.utc)
    assert scenario.plan == PlanOptions(duplicates=1, out_of_order=0, burst=2)
    assert generate_events(scenario) == generate_events(Scenario.from_json_file(path))


@pytest.mark.parametrize(
    "document",
    [
        {"meetings": 0},
        {"unknown_field": 1},
        {"observed_share": 1.5},
        {"start": "2031-01-05T09:00:00"},
        {"plan": {"burst": 1}},
        {
            "campaigns": [
                {"utm_source": "a", "utm_campaign": "b", "extra": {"c": "", "d": "", "e": "", "f": ""}}
            ]
        },
    ],
)
def test_scenario_rejects_invalid_json(document: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        Scenario.model_validate_json(json.dumps(document))


# ---------------------------------------------------------------------------------------
# Delivery plan
# ---------------------------------------------------------------------------------------


def _by_category(deliveries: list[Delivery], category: Category) -> list[Delivery]:
    return [delivery for delivery in deliveries if delivery.category == category]


def test_plan_contains_every_category() -> None:
    scenario = Scenario(seed=5, meetings=20, plan=PlanOptions(duplicates=3, out_of_order=2, burst=4))
    deliveries = plan_scenario(scenario)
    events = generate_events(scenario)

    assert len(_by_category(deliveries, Category.DUPLICATE)) == 3
    assert len(_by_category(deliveries, Category.OUT_OF_ORDER)) == 2
    assert len(_by_category(deliveries, Category.BURST)) == 4
    assert len(_by_category(deliveries, Category.TAMPERED)) == 1
    assert len(_by_category(deliveries, Category.NOT_JSON)) == 1
    assert len(_by_category(deliveries, Category.IN_ORDER)) == len(events) - 2 - 4
    assert len({delivery.label for delivery in deliveries}) == len(deliveries)


def test_plan_without_extras_is_in_order() -> None:
    scenario = Scenario(
        seed=5, plan=PlanOptions(duplicates=0, out_of_order=0, burst=0, tampered=False, not_json=False)
    )
    deliveries = plan_scenario(scenario)

    assert [delivery.body for delivery in deliveries] == [
        event.encode() for event in generate_events(scenario)
    ]
    assert {delivery.category for delivery in deliveries} == {Category.IN_ORDER}
    assert {delivery.expected for delivery in deliveries} == {Outcome.ACCEPTED}


def test_plan_delivers_every_event() -> None:
    scenario = Scenario(seed=5, meetings=20)
    deliveries = plan_scenario(scenario)
    delivered_keys = {delivery.key for delivery in deliveries if delivery.expected == Outcome.ACCEPTED}

    assert delivered_keys == {event.key for event in generate_events(scenario)}


def test_duplicates_keep_identity() -> None:
    deliveries = plan_scenario(Scenario(seed=5, meetings=20, plan=PlanOptions(duplicates=4)))
    duplicates = _by_category(deliveries, Category.DUPLICATE)

    assert len(duplicates) == 4
    for duplicate in duplicates:
        original = next(delivery for delivery in deliveries if delivery.key == duplicate.key)
        original_body = json.loads(original.body)
        duplicate_body = json.loads(duplicate.body)

        assert deliveries.index(original) < deliveries.index(duplicate)
        assert original.category == Category.IN_ORDER
        assert duplicate.expected == Outcome.DUPLICATE
        check_event_body(duplicate_body)
        assert duplicate_body["type"] == original_body["type"]
        assert duplicate_body["meeting"]["meeting_id"] == original_body["meeting"]["meeting_id"]
        assert duplicate_body["event_ts"] == original_body["event_ts"]
        assert parse_instant(duplicate_body["webhook_sent_at"]) > parse_instant(
            original_body["webhook_sent_at"]
        )
        assert duplicate_body.get("request_id") != original_body.get("request_id")
        assert duplicate_body["meeting"] == original_body["meeting"]
        assert duplicate.headers == original.headers


def test_out_of_order_precedes_created() -> None:
    deliveries = plan_scenario(Scenario(seed=5, meetings=20, plan=PlanOptions(out_of_order=3)))

    for moved in _by_category(deliveries, Category.OUT_OF_ORDER):
        created = next(
            delivery
            for delivery in deliveries
            if delivery.key is not None
            and delivery.key.meeting_id == moved.key.meeting_id
            and delivery.key.type == EVENT_CREATED
        )

        assert moved.key.type in (EVENT_UPDATED, EVENT_CANCELLED)
        assert deliveries.index(moved) + 1 == deliveries.index(created)
        assert parse_instant(moved.key.event_ts) > parse_instant(created.key.event_ts)
        assert moved.expected == Outcome.ACCEPTED
        assert created.expected == Outcome.ACCEPTED


def test_burst_ends_plan_with_distinct_meetings() -> None:
    deliveries = plan_scenario(Scenario(seed=5, meetings=20, plan=PlanOptions(burst=5)))
    burst = _by_category(deliveries, Category.BURST)

    assert deliveries[-5:] == burst
    assert {delivery.burst for delivery in burst} == {0}
    assert len({delivery.key.meeting_id for delivery in burst}) == 5
    assert all(delivery.burst is None for delivery in deliveries[:-5])
    for delivery in burst:
        same_meeting = [
            other for other in deliveries if other.key and other.key.meeting_id == delivery.key.meeting_id
        ]
        assert same_meeting[-1] is delivery


def test_plan_signatures_verify() -> None:
    deliveries = plan_scenario(Scenario(seed=5, meetings=20))

    for delivery in deliveries:
        headers = delivery.request_headers(SECRET, USER_AGENT)
        if delivery.category == Category.TAMPERED:
            continue

        assert verify(delivery.body, [headers[SIGNATURE_HEADER]], [SECRET]) == 0
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"] == USER_AGENT


def test_tampered_delivery_fails_verification() -> None:
    deliveries = plan_scenario(Scenario(seed=5, meetings=20))
    (tampered,) = _by_category(deliveries, Category.TAMPERED)
    signature = tampered.signature(SECRET)

    with pytest.raises(SignatureMismatch):
        verify(tampered.body, [signature], [SECRET])
    assert verify(tampered.signed_body, [signature], [SECRET]) == 0
    assert tampered.body != tampered.signed_body
    assert EventKey.from_body(json.loads(tampered.body)) == tampered.key
    assert tampered.expected == Outcome.REJECTED


def test_not_json_delivery_is_quarantined() -> None:
    deliveries = plan_scenario(Scenario(seed=5, meetings=20))
    (not_json,) = _by_category(deliveries, Category.NOT_JSON)

    with pytest.raises(ValueError):
        json.loads(not_json.body)
    assert verify(not_json.body, [not_json.signature(SECRET)], [SECRET]) == 0
    assert not_json.key is None
    assert not_json.expected == Outcome.QUARANTINED
    assert not_json.expected.http_status == 202


def test_plan_headers_copy_body_fields() -> None:
    for delivery in plan_scenario(Scenario(seed=5, meetings=20)):
        if delivery.category == Category.NOT_JSON:
            continue
        body = json.loads(delivery.body)

        assert delivery.headers["x-reclaim-api-version"] == body["api_version"]
        assert delivery.headers["x-reclaim-webhook-type"] == body["type"]


def test_plan_rejects_impossible_options() -> None:
    events = generate_events(Scenario(seed=5, meetings=2, update_share=0.0, cancel_share=0.0))

    with pytest.raises(ValueError, match="out_of_order=1"):
        build_plan(events, PlanOptions(out_of_order=1, burst=0), seed=5)
    with pytest.raises(ValueError, match="burst=3"):
        build_plan(events, PlanOptions(out_of_order=0, burst=3), seed=5)


# ---------------------------------------------------------------------------------------
# Deliveries from files
# ---------------------------------------------------------------------------------------

# Odd whitespace, an escaped non-ASCII character and a trailing newline: any
# re-serialisation would change these bytes.
FILE_BODY = (
    b'{\n  "type" : "SchedulingLink.Meeting.Created",\n  "event_ts":"2030-04-26T14:30:00Z",'
    b' "webhook_sent_at": "2030-04-26T14:30:01Z", "api_version":"v2025-09-26",\n'
    b'  "meeting": {"meeting_id": "file-meeting-1", "attendee": {"name": "Zo\\u00eb \xc3\x85ngstr\xc3\xb6m",'
    b' "email": "zoe@example.org"}}}\n'
)


def test_file_delivery_keeps_bytes(tmp_path: Path) -> None:
    path = tmp_path / "created.json"
    path.write_bytes(FILE_BODY)

    (delivery,) = deliveries_from_file(path)

    assert delivery.body == FILE_BODY
    assert delivery.category == Category.FILE
    assert delivery.key == EventKey(EVENT_CREATED, "file-meeting-1", "2030-04-26T14:30:00Z")
    assert delivery.headers["x-reclaim-api-version"] == "v2025-09-26"
    assert delivery.headers["x-reclaim-webhook-type"] == EVENT_CREATED
    assert delivery.expected == Outcome.ACCEPTED
    assert verify(FILE_BODY, [delivery.signature(SECRET)], [SECRET]) == 0


def test_file_folder_outcomes_and_overrides(tmp_path: Path) -> None:
    (tmp_path / "a-created.json").write_bytes(FILE_BODY)
    (tmp_path / "b-retry.json").write_bytes(FILE_BODY.replace(b"14:30:01Z", b"14:31:05Z"))
    (tmp_path / "c-broken.json").write_bytes(b'{"type": "SchedulingLink.Meeting.Cre')
    (tmp_path / "notes.txt").write_bytes(b"not sent")

    deliveries = deliveries_from_file(tmp_path)
    overridden = deliveries_from_file(
        tmp_path / "c-broken.json", expected=Outcome.REJECTED, api_version="v2099-01-01", webhook_type="X"
    )

    assert [delivery.expected for delivery in deliveries] == [
        Outcome.ACCEPTED,
        Outcome.DUPLICATE,
        Outcome.QUARANTINED,
    ]
    assert "x-reclaim-api-version" not in deliveries[2].headers
    assert overridden[0].expected == Outcome.REJECTED
    assert overridden[0].headers["x-reclaim-api-version"] == "v2099-01-01"
    assert overridden[0].headers["x-reclaim-webhook-type"] == "X"


def test_file_delivery_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        deliveries_from_file(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="no \\*.json files"):
        deliveries_from_file(tmp_path)


# ---------------------------------------------------------------------------------------
# A loopback HTTP server for the sender tests
# ---------------------------------------------------------------------------------------


@dataclass
class ReceivedRequest:
    """One request as the test server read it off the socket."""

    path: str
    headers: list[tuple[str, str]]
    body: bytes
    received_at: float

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


Response = tuple[int, dict[str, str], bytes]
Responder = Callable[[ReceivedRequest], Response]


def json_response(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()


@dataclass
class ReferenceReceiver:
    """Minimal receiver with the outcomes the plan expects: verify, parse, de-duplicate."""

    secret: str
    seen: set[tuple[str, str, Any]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: ReceivedRequest) -> Response:
        try:
            verify(request.body, request.header_values(SIGNATURE_HEADER), [self.secret])
        except SignatureError as error:
            return json_response(401, {"status": "rejected", "reason": error.reason})

        try:
            key = EventKey.from_body(json.loads(request.body))
        except ValueError:
            key = None
        if key is None:
            return json_response(202, {"status": "quarantined"})

        with self.lock:
            if key.normalized() in self.seen:
                return json_response(200, {"status": "duplicate"})
            self.seen.add(key.normalized())
        return json_response(200, {"status": "accepted"})


class RecordingServer:
    """Threaded HTTP(S) server on 127.0.0.1 that records requests and responds through a responder."""

    def __init__(self, responder: Responder, ssl_context: ssl.SSLContext | None = None) -> None:
        self.responder = responder
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self.scheme = "https" if ssl_context is not None else "http"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="recording-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{self.scheme}://{host}:{port}/reclaim/webhook"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
                length = int(self.headers.get("Content-Length", "0"))
                request = ReceivedRequest(
                    path=self.path,
                    headers=list(self.headers.items()),
                    body=self.rfile.read(length),
                    received_at=time.perf_counter(),
                )
                with server._lock:
                    server.requests.append(request)

                status, headers, payload = server.responder(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
                pass

        return Handler


@pytest.fixture
def start_server() -> Iterator[Callable[..., RecordingServer]]:
    """Start recording servers on demand and stop all of them when the test ends."""
    servers: list[RecordingServer] = []

    def start(
        responder: Responder | None = None, ssl_context: ssl.SSLContext | None = None
    ) -> RecordingServer:
        server = RecordingServer(responder or ReferenceReceiver(SECRET), ssl_context)
        servers.append(server)
        server.start()
        return server

    yield start

    for server in servers:
        server.stop()


def _event_delivery(label: str = "single", body: bytes | None = None) -> Delivery:
    event = generate_events(Scenario(seed=3, meetings=1, observed_share=1.0))[0]
    return Delivery(
        label=label,
        category=Category.IN_ORDER,
        body=body if body is not None else event.encode(),
        headers={
            "Content-Type": "application/json",
            "x-reclaim-api-version": event.api_version,
            "x-reclaim-webhook-type": event.type,
        },
        expected=Outcome.ACCEPTED,
        key=event.key,
    )


# ---------------------------------------------------------------------------------------
# Sender
# ---------------------------------------------------------------------------------------


def test_send_headers_and_exact_body(start_server: Callable[..., RecordingServer]) -> None:
    server = start_server()
    delivery = _event_delivery()

    (result,) = send(server.url, [delivery], SECRET)
    (request,) = server.requests
    body = json.loads(delivery.body)

    assert request.path == "/reclaim/webhook"
    assert request.body == delivery.body
    assert request.header_values("Content-Type") == ["application/json"]
    assert request.header_values(SIGNATURE_HEADER) == [delivery.signature(SECRET)]
    assert request.header_values("x-reclaim-api-version") == [body["api_version"]]
    assert request.header_values("x-reclaim-webhook-type") == [body["type"]]
    assert request.header_values("User-Agent") == [USER_AGENT]
    assert "simulator" in USER_AGENT
    assert verify(request.body, request.header_values(SIGNATURE_HEADER), [SECRET]) == 0
    assert result.http_status == 200
    assert result.json_status == "accepted"
    assert result.key == delivery.key
    assert result.attempts == 1
    assert result.error is None
    assert result.elapsed_ms > 0
    assert result.matches_expected


def test_send_file_body_unchanged(start_server: Callable[..., RecordingServer], tmp_path: Path) -> None:
    path = tmp_path / "created.json"
    path.write_bytes(FILE_BODY)
    server = start_server()

    (result,) = send(server.url, deliveries_from_file(path), SECRET)
    (request,) = server.requests

    assert request.body == FILE_BODY
    assert request.header_values("x-reclaim-api-version") == ["v2025-09-26"]
    assert result.json_status == "accepted"


def test_send_plan_gets_expected_outcomes(start_server: Callable[..., RecordingServer]) -> None:
    server = start_server()
    deliveries = plan_scenario(Scenario(seed=5, meetings=20))

    results = send(server.url, deliveries, SECRET)

    assert [result.label for result in results] == [delivery.label for delivery in deliveries]
    assert [request.body for request in server.requests[: len(deliveries) - 3]] == [
        delivery.body for delivery in deliveries[:-3]
    ]
    mismatches = [
        (r.label, r.expected, r.http_status, r.json_status) for r in results if not r.matches_expected
    ]
    assert mismatches == []


def test_send_honours_retry_after(start_server: Callable[..., RecordingServer]) -> None:
    receiver = ReferenceReceiver(SECRET)
    calls: list[int] = []

    def busy_once(request: ReceivedRequest) -> Response:
        calls.append(1)
        if len(calls) == 1:
            return json_response(503, {"detail": "busy"}, {"Retry-After": "1"})
        return receiver(request)

    server = start_server(busy_once)
    delivery = _event_delivery()

    (result,) = send(server.url, [delivery], SECRET)
    first, second = server.requests

    assert result.attempts == 2
    assert result.http_status == 200
    assert result.json_status == "accepted"
    assert second.received_at - first.received_at >= 0.95
    assert first.body == second.body == delivery.body
    assert first.header_values(SIGNATURE_HEADER) == second.header_values(SIGNATURE_HEADER)


def test_send_retry_limits(start_server: Callable[..., RecordingServer]) -> None:
    retry_after = {"value": "2"}

    def always_busy(request: ReceivedRequest) -> Response:
        headers = {"Retry-After": retry_after["value"]} if retry_after["value"] else {}
        return json_response(429, {"detail": "slow down"}, headers)

    server = start_server(always_busy)
    waits: list[float] = []

    (bounded,) = send(server.url, [_event_delivery()], SECRET, max_retries=2, sleep=waits.append)
    retry_after["value"] = ""
    (backoff,) = send(
        server.url, [_event_delivery()], SECRET, max_retries=3, retry_backoff=0.5, sleep=waits.append
    )
    retry_after["value"] = "3600"
    (too_long,) = send(server.url, [_event_delivery()], SECRET, max_retry_after=30, sleep=waits.append)

    assert bounded.attempts == 3
    assert bounded.http_status == 429
    assert "after 2 retries" in bounded.error
    assert backoff.attempts == 4
    assert waits == [2.0, 2.0, 0.5, 1.0, 2.0]
    assert too_long.attempts == 1
    assert "exceeds max_retry_after" in too_long.error
    assert not too_long.matches_expected


def test_parse_retry_after_forms() -> None:
    in_ten_seconds = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=10), usegmt=True)

    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 0 ") == 0.0
    assert 8.0 <= parse_retry_after(in_ten_seconds) <= 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-1") is None
    assert parse_retry_after(None) is None


def test_send_reports_http_errors(start_server: Callable[..., RecordingServer]) -> None:
    server = start_server(lambda request: (500, {"Content-Type": "text/plain"}, b"internal error"))

    (result,) = send(server.url, [_event_delivery()], SECRET)

    assert result.http_status == 500
    assert result.json_status is None
    assert result.error is None
    assert not result.matches_expected


def test_send_reports_connection_error() -> None:
    # Bind and close a loopback port so that nothing listens on it.
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = probe.server_address[1]
    probe.server_close()

    (result,) = send(f"http://127.0.0.1:{port}/reclaim/webhook", [_event_delivery()], SECRET, timeout=2)

    assert result.http_status is None
    assert result.error.startswith("ConnectionError")
    assert result.attempts == 1


def test_send_burst_concurrently(start_server: Callable[..., RecordingServer]) -> None:
    deliveries = plan_scenario(Scenario(seed=5, meetings=20, plan=PlanOptions(burst=4)))
    burst = _by_category(deliveries, Category.BURST)
    receiver = ReferenceReceiver(SECRET)
    # Each handler waits for all four requests, so a sequential sender breaks the barrier.
    all_arrived = threading.Barrier(len(burst), timeout=3)

    def wait_for_all(request: ReceivedRequest) -> Response:
        try:
            all_arrived.wait()
        except threading.BrokenBarrierError:
            return json_response(500, {"detail": "requests did not overlap"})
        return receiver(request)

    server = start_server(wait_for_all)

    results = send(server.url, burst, SECRET)
    started = [result.started_ms for result in results]
    received = [request.received_at for request in server.requests]

    assert [result.http_status for result in results] == [200] * len(burst)
    assert [result.label for result in results] == [delivery.label for delivery in burst]
    assert max(started) - min(started) < 10
    assert (max(received) - min(received)) * 1000 < 100
    assert sorted(request.body for request in server.requests) == sorted(delivery.body for delivery in burst)


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """Write a self-signed certificate for 127.0.0.1 with the receiver's own helper."""
    paths = write_self_signed_certificate(directory, hosts=("127.0.0.1",))
    return Path(paths.certfile), Path(paths.keyfile)


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_send_tls_verification(start_server: Callable[..., RecordingServer], tmp_path: Path) -> None:
    certificate_path, key_path = _self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate_path, key_path)
    server = start_server(ssl_context=context)

    (unverified,) = send(server.url, [_event_delivery("unverified")], SECRET, verify=False)
    (with_bundle,) = send(server.url, [_event_delivery("bundle")], SECRET, verify=certificate_path)
    (default_bundle,) = send(server.url, [_event_delivery("default")], SECRET, timeout=5)

    assert unverified.http_status == 200
    assert with_bundle.http_status == 200
    assert with_bundle.json_status == "duplicate"
    assert default_bundle.http_status is None
    assert default_bundle.error.startswith("SSLError")
