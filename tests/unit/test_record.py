"""Tests of the bounded record built from an event, and of cutting text at UTF-8 boundaries."""

from __future__ import annotations

import json

import pytest

from airflow_provider_reclaim.wire.events import parse_event
from airflow_provider_reclaim.wire.record import build_record, record_size, truncate_utf8

RECORD_LIMIT_BYTES = 48 * 1024
DESCRIPTION_BYTES = 200 * 1024


def compact_json_size(record: dict) -> int:
    return len(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def repeat_to_bytes(unit: str, size: int, lead: str = "") -> str:
    """Return ``lead`` followed by ``unit`` repeated until the UTF-8 text is about ``size`` bytes."""
    return lead + unit * (size // len(unit.encode("utf-8")))


# A one-byte lead shifts every multi-byte character off the 4-byte grid, so that a cut at a
# round byte count lands inside a character.
LONG_DESCRIPTIONS = {
    "ASCII": repeat_to_bytes("Walk through the product. ", DESCRIPTION_BYTES),
    "two-byte characters": repeat_to_bytes("é", DESCRIPTION_BYTES, lead="a"),
    "three-byte characters": repeat_to_bytes("€", DESCRIPTION_BYTES, lead="a"),
    "emoji": repeat_to_bytes("😀", DESCRIPTION_BYTES, lead="a"),
    "control characters": repeat_to_bytes("\x01\x1f\x7f", DESCRIPTION_BYTES),
    "mixed with escapes": repeat_to_bytes('é😀\t\n"\\\x00 line ', DESCRIPTION_BYTES, lead="a"),
}


def event_with_description(base: bytes, description: str):
    document = json.loads(base)
    document["meeting"]["scheduling_link_description"] = description
    return parse_event(json.dumps(document, ensure_ascii=False).encode("utf-8"))


@pytest.fixture
def observed(load_body) -> bytes:
    return load_body("created-observed.json")


@pytest.mark.parametrize("description", LONG_DESCRIPTIONS.values(), ids=LONG_DESCRIPTIONS.keys())
def test_record_long_description_bounded(observed, description):
    assert len(description.encode("utf-8")) >= DESCRIPTION_BYTES - 32

    record = build_record(event_with_description(observed, description))

    assert compact_json_size(record) < RECORD_LIMIT_BYTES
    assert record_size(record) == compact_json_size(record)
    assert "scheduling_link.description" in record["truncated"]


@pytest.mark.parametrize("description", LONG_DESCRIPTIONS.values(), ids=LONG_DESCRIPTIONS.keys())
def test_record_long_description_prefix(observed, description):
    record = build_record(event_with_description(observed, description))
    kept_description = record["scheduling_link"]["description"]

    assert kept_description
    assert len(kept_description) < len(description)
    assert description.startswith(kept_description)
    assert kept_description.encode("utf-8").decode("utf-8") == kept_description


@pytest.mark.parametrize("description", LONG_DESCRIPTIONS.values(), ids=LONG_DESCRIPTIONS.keys())
def test_record_long_description_round_trip(observed, description):
    record = build_record(event_with_description(observed, description))

    assert json.loads(json.dumps(record)) == record
    assert json.loads(json.dumps(record, ensure_ascii=False).encode("utf-8")) == record


def test_record_every_text_field_long(observed):
    # Escaped control characters take six bytes each in JSON, so capping each field by its
    # UTF-8 size is not enough and the record must drop whole fields to fit.
    huge = "\x00" * DESCRIPTION_BYTES
    document = json.loads(observed)
    document["cancellation_message"] = huge
    document["meeting"]["scheduling_link_description"] = huge
    document["meeting"]["scheduling_link_title"] = huge
    document["meeting"]["meeting_title"] = huge
    document["meeting"]["attendee"]["attendee_name"] = huge
    record = build_record(parse_event(json.dumps(document).encode("utf-8")))

    assert compact_json_size(record) < RECORD_LIMIT_BYTES
    assert json.loads(json.dumps(record)) == record
    assert "cancellation_message" in record["truncated"]
    assert "attendee.name" in record["truncated"]


def test_record_short_description_untouched(observed):
    record = build_record(parse_event(observed))

    assert record["scheduling_link"]["description"] == (
        "Bring one question.\n\nPaste your reference into the booking note."
    )
    assert record["truncated"] == []


def test_record_large_custom_data(load_body):
    document = json.loads(load_body("created-documented.json"))
    document["meeting"]["custom_data"] = {"data": {"notes": "x" * 20_000}, "errors": []}
    record = build_record(parse_event(json.dumps(document).encode("utf-8")))

    assert compact_json_size(record) < RECORD_LIMIT_BYTES
    assert "custom_data" in record["truncated"]
    assert "notes" not in record["custom_data"]["data"]


def test_record_observed_fields(observed):
    record = build_record(parse_event(observed))

    assert record["kind"] == "created"
    assert record["meeting_id"] == "Qx7LmN2pR4sT"
    assert record["attendee"] == {
        "email": "grace.hopper@example.net",
        "name": "Grace Hopper",
        "time_zone": "Europe/Prague",
    }
    assert record["host"]["email"] == "hal@example.com"
    assert record["start_time"].startswith("2030-08-31T19:30:00")
    assert record["start_time"].endswith("Z")
    assert record["custom_data"] == {"data": {}, "errors": []}


def test_record_documented_custom_data(load_body):
    record = build_record(parse_event(load_body("created-documented.json")))

    assert record["custom_data"]["data"] == {"utm_source": "newsletter", "utm_campaign": "spring-launch"}
    assert record["attendee"]["time_zone"] is None


TRUNCATE_CASES = {
    "empty, zero budget": ("", 0, "", False),
    "ASCII fits exactly": ("abc", 3, "abc", False),
    "ASCII one byte over": ("abc", 2, "ab", True),
    "ASCII zero budget": ("abc", 0, "", True),
    "two-byte fits exactly": ("é", 2, "é", False),
    "two-byte cut inside": ("é", 1, "", True),
    "two-byte after ASCII cut inside": ("aé", 2, "a", True),
    "three-byte cut after one": ("€€", 5, "€", True),
    "three-byte cut at boundary": ("€€", 3, "€", True),
    "emoji fits exactly": ("😀", 4, "😀", False),
    "emoji cut after three bytes": ("😀", 3, "", True),
    "emoji cut after one byte": ("a😀b", 2, "a", True),
    "emoji kept, ASCII cut": ("a😀b", 5, "a😀", True),
    "combining accent split off": ("e\u0301", 2, "e", True),
}


@pytest.mark.parametrize(
    ("text", "max_bytes", "expected_text", "expected_cut"), TRUNCATE_CASES.values(), ids=TRUNCATE_CASES.keys()
)
def test_truncate_utf8_boundaries(text, max_bytes, expected_text, expected_cut):
    result, cut = truncate_utf8(text, max_bytes)

    assert result == expected_text
    assert cut is expected_cut
    assert len(result.encode("utf-8")) <= max_bytes
