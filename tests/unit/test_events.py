"""Tests of parsing Reclaim event bodies into models, kinds and identity keys."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pydantic
import pytest

from airflow_provider_reclaim.wire.events import EventKind, parse_event

FIXTURE_NAMES = (
    "created-documented.json",
    "created-observed.json",
    "rescheduled-observed.json",
    "cancelled-observed.json",
)


def body_with(base: bytes, **changes) -> bytes:
    """Return ``base`` with top-level fields replaced, or removed when the new value is ``...``."""
    document = json.loads(base)
    for name, value in changes.items():
        if value is ...:
            document.pop(name, None)
        else:
            document[name] = value
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


def meeting_with(base: bytes, **changes) -> bytes:
    """Return ``base`` with ``meeting`` fields replaced, or removed when the new value is ``...``."""
    document = json.loads(base)
    for name, value in changes.items():
        if value is ...:
            document["meeting"].pop(name, None)
        else:
            document["meeting"][name] = value
    return json.dumps(document, ensure_ascii=False).encode("utf-8")


@pytest.fixture
def documented(load_body) -> bytes:
    return load_body("created-documented.json")


@pytest.fixture
def observed(load_body) -> bytes:
    return load_body("created-observed.json")


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_copy_matches_original(reclaim_fixtures_dir, shared_reclaim_fixtures_dir, name):
    assert (reclaim_fixtures_dir / name).read_bytes() == (shared_reclaim_fixtures_dir / name).read_bytes()


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_parse_every_fixture(load_body, name):
    event = parse_event(load_body(name))

    assert event.meeting_id
    assert event.kind is not EventKind.UNKNOWN


def test_attendee_documented_shape(documented):
    attendee = parse_event(documented).meeting.attendee

    assert attendee.normalized_email == "ada@example.org"
    assert attendee.display_name == "Ada Lovelace"
    assert attendee.time_zone is None


def test_attendee_observed_shape(observed):
    attendee = parse_event(observed).meeting.attendee

    assert attendee.normalized_email == "grace.hopper@example.net"
    assert attendee.display_name == "Grace Hopper"
    assert attendee.time_zone == "Europe/Prague"


def test_attendee_shapes_agree(documented, observed):
    same_person_documented = meeting_with(
        documented, attendee={"name": "Grace Hopper", "email": "Grace.Hopper@Example.net"}
    )
    from_documented = parse_event(same_person_documented).meeting.attendee
    from_observed = parse_event(observed).meeting.attendee

    assert from_documented.normalized_email == from_observed.normalized_email
    assert from_documented.display_name == from_observed.display_name
    assert from_documented.time_zone is None
    assert from_observed.time_zone == "Europe/Prague"


def test_host_marked_by_is_host(observed):
    participants = [
        {"name": "Colleague", "email": "colleague@example.com", "is_host": False, "user_id": "u-2"},
        {"name": "Hal Host", "email": "hal@example.com", "is_host": True, "user_id": "u-1"},
    ]
    meeting = parse_event(meeting_with(observed, participants=participants)).meeting

    assert meeting.host is not None
    assert meeting.host.email == "hal@example.com"
    assert meeting.host.user_id == "u-1"


def test_host_without_is_host(documented):
    participants = [
        {"name": "Hal Host", "email": "hal@example.com"},
        {"name": "Colleague", "email": "colleague@example.com"},
    ]
    meeting = parse_event(meeting_with(documented, participants=participants)).meeting

    assert meeting.host is not None
    assert meeting.host.email == "hal@example.com"


def test_host_none_marked(observed):
    participants = [{"name": "Colleague", "email": "colleague@example.com", "is_host": False}]
    meeting = parse_event(meeting_with(observed, participants=participants)).meeting

    assert meeting.host is None


def test_host_no_participants(documented):
    meeting = parse_event(meeting_with(documented, participants=[])).meeting

    assert meeting.host is None


def test_times_offset_normalised_to_utc(observed):
    meeting = parse_event(observed).meeting

    assert meeting.start_time == datetime(2030, 8, 31, 19, 30, tzinfo=timezone.utc)
    assert meeting.start_time.utcoffset() == timedelta(0)
    assert meeting.end_time == datetime(2030, 8, 31, 20, 0, tzinfo=timezone.utc)
    assert meeting.end_time.utcoffset() == timedelta(0)


def test_times_z_normalised_to_utc(documented):
    event = parse_event(documented)

    assert event.event_ts == datetime(2030, 4, 26, 14, 30, tzinfo=timezone.utc)
    assert event.event_ts.utcoffset() == timedelta(0)
    assert event.webhook_sent_at == datetime(2030, 4, 26, 14, 30, 1, tzinfo=timezone.utc)


def test_times_equal_instants_compare_equal(load_body):
    # The reschedule gives 08:00Z and the cancellation 10:00+02:00, which is the same instant.
    rescheduled = parse_event(load_body("rescheduled-observed.json")).meeting
    cancelled = parse_event(load_body("cancelled-observed.json")).meeting

    assert rescheduled.start_time == cancelled.start_time
    assert rescheduled.end_time == cancelled.end_time


def test_event_ts_milliseconds_kept(observed):
    event = parse_event(observed)

    assert event.event_ts.microsecond == 255000


@pytest.mark.parametrize("field", ["event_ts", "webhook_sent_at"])
def test_naive_event_time_invalid(documented, field):
    with pytest.raises(pydantic.ValidationError) as caught:
        parse_event(body_with(documented, **{field: "2030-04-26T14:30:00"}))

    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("field", ["start_time", "end_time"])
def test_naive_meeting_time_invalid(documented, field):
    with pytest.raises(pydantic.ValidationError) as caught:
        parse_event(meeting_with(documented, **{field: "2030-04-28T10:00:00"}))

    assert caught.value.errors()[0]["loc"] == ("meeting", field)


@pytest.mark.parametrize(
    "ccs",
    ["", "someone@example.com", ["someone@example.com", "other@example.com"], []],
    ids=["empty string", "string", "list", "empty list"],
)
def test_ccs_string_or_list(observed, ccs):
    meeting = parse_event(meeting_with(observed, ccs=ccs)).meeting

    assert meeting.ccs == ccs


def test_custom_data_present(documented):
    custom = parse_event(documented).custom_data

    assert custom.data == {"utm_source": "newsletter", "utm_campaign": "spring-launch"}
    assert custom.errors == []


CUSTOM_DATA_EMPTY = {
    "absent": ...,
    "null": None,
    "null members": {"data": None, "errors": None},
    "empty members": {"data": {}, "errors": []},
}


@pytest.mark.parametrize("value", CUSTOM_DATA_EMPTY.values(), ids=CUSTOM_DATA_EMPTY.keys())
def test_custom_data_empty(documented, value):
    custom = parse_event(meeting_with(documented, custom_data=value)).custom_data

    assert custom.data == {}
    assert custom.errors == []


def test_custom_data_truncated(documented):
    value = {"data": {"utm_source": "newsletter"}, "errors": ["TRUNCATED"]}
    custom = parse_event(meeting_with(documented, custom_data=value)).custom_data

    assert custom.data == {"utm_source": "newsletter"}
    assert custom.errors == ["TRUNCATED"]


def test_custom_data_keeps_key_case(documented):
    value = {"data": {"UTM_Source": "Newsletter", "nested": {"a": [1, 2]}}, "errors": []}
    custom = parse_event(meeting_with(documented, custom_data=value)).custom_data

    assert custom.data == {"UTM_Source": "Newsletter", "nested": {"a": [1, 2]}}


def test_unknown_fields_kept(observed):
    with_top_level = body_with(observed, reschedule_reason={"code": "HOST_CONFLICT"})
    with_both = meeting_with(with_top_level, video_provider="zoom")
    event = parse_event(with_both)

    assert event.model_extra == {"reschedule_reason": {"code": "HOST_CONFLICT"}}
    assert event.meeting.model_extra == {"video_provider": "zoom"}


def test_unknown_attendee_fields_kept(observed):
    attendee = json.loads(observed)["meeting"]["attendee"] | {"attendee_locale": "cs-CZ"}
    event = parse_event(meeting_with(observed, attendee=attendee))

    assert event.meeting.attendee.model_extra == {"attendee_locale": "cs-CZ"}


API_VERSIONS = ["v2024-10-02", "v2025-01-15", "v2025-09-26", "v2026-04-13", "v2031-01-01"]


@pytest.mark.parametrize("api_version", API_VERSIONS)
def test_any_api_version_accepted(documented, api_version):
    event = parse_event(body_with(documented, api_version=api_version))

    assert event.api_version == api_version


def test_api_version_absent(documented):
    event = parse_event(body_with(documented, api_version=...))

    assert event.api_version is None


KINDS = {
    "SchedulingLink.Meeting.Created": EventKind.CREATED,
    "SchedulingLink.Meeting.Updated": EventKind.RESCHEDULED,
    "SchedulingLink.Meeting.Cancelled": EventKind.CANCELLED,
    "SchedulingLink.Meeting.Rescheduled": EventKind.UNKNOWN,
    "SchedulingLink.Meeting.NoShow": EventKind.UNKNOWN,
    "Task.Created": EventKind.UNKNOWN,
}


@pytest.mark.parametrize(("event_type", "kind"), KINDS.items(), ids=KINDS.keys())
def test_kind_from_type(documented, event_type, kind):
    event = parse_event(body_with(documented, type=event_type))

    assert event.kind is kind


def test_kind_ignores_cancellation_message(documented):
    updated = body_with(documented, type="SchedulingLink.Meeting.Updated", cancellation_message="Sorry")

    assert parse_event(updated).kind is EventKind.RESCHEDULED


def test_kind_unknown_despite_cancellation_message(documented):
    unknown = body_with(documented, type="SchedulingLink.Meeting.Deleted", cancellation_message="Sorry")

    assert parse_event(unknown).kind is EventKind.UNKNOWN


def test_kind_precedence_order():
    assert EventKind.CANCELLED.precedence > EventKind.RESCHEDULED.precedence
    assert EventKind.RESCHEDULED.precedence > EventKind.CREATED.precedence
    assert EventKind.CREATED.precedence > EventKind.UNKNOWN.precedence


def test_identity_ignores_delivery_fields(documented):
    retry = body_with(
        documented,
        webhook_sent_at="2030-04-26T14:35:09Z",
        request_id="0a0b0c0d-1111-4222-8333-444455556666",
    )

    assert retry != documented
    assert parse_event(retry).identity_key == parse_event(documented).identity_key


def test_identity_ignores_absent_delivery_fields(documented):
    stripped = body_with(documented, webhook_sent_at=..., request_id=...)

    assert parse_event(stripped).identity_key == parse_event(documented).identity_key


@pytest.mark.parametrize(
    "event_ts",
    ["2030-04-26T16:30:00+02:00", "2030-04-26T14:30:00.000Z", "2030-04-26T09:30:00-05:00"],
)
def test_identity_same_instant_other_offset(documented, event_ts):
    other_offset = body_with(documented, event_ts=event_ts)

    assert parse_event(other_offset).identity_key == parse_event(documented).identity_key


def test_identity_other_type(documented):
    updated = body_with(documented, type="SchedulingLink.Meeting.Updated")

    assert parse_event(updated).identity_key != parse_event(documented).identity_key


def test_identity_other_event_ts(documented):
    one_millisecond_later = body_with(documented, event_ts="2030-04-26T14:30:00.001Z")

    assert parse_event(one_millisecond_later).identity_key != parse_event(documented).identity_key


def test_identity_other_meeting(documented):
    other_meeting = meeting_with(documented, meeting_id="another-meeting")

    assert parse_event(other_meeting).identity_key != parse_event(documented).identity_key


@pytest.mark.parametrize("meeting_id", [..., "", None], ids=["absent", "empty", "null"])
def test_meeting_id_required(documented, meeting_id):
    with pytest.raises(pydantic.ValidationError) as caught:
        parse_event(meeting_with(documented, meeting_id=meeting_id))

    assert caught.value.errors()[0]["loc"] == ("meeting", "meeting_id")


def test_meeting_required(documented):
    with pytest.raises(pydantic.ValidationError) as caught:
        parse_event(body_with(documented, meeting=...))

    assert caught.value.errors()[0]["loc"] == ("meeting",)


NOT_EVENTS = {
    "empty": b"",
    "text": b"not json",
    "html": b"<html>Bad gateway</html>",
    "cut off": b'{"type": "SchedulingLink.Meeting.Created"',
    "array": b"[]",
    "null": b"null",
}


@pytest.mark.parametrize("body", NOT_EVENTS.values(), ids=NOT_EVENTS.keys())
def test_parse_event_not_an_event(body):
    with pytest.raises(pydantic.ValidationError):
        parse_event(body)
