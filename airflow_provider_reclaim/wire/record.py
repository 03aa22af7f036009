"""The bounded, JSON-safe summary of an event that travels in asset events and XCom.

An event body can be large: ``scheduling_link_description`` is free text that the link owner
controls and that rides in every event. Asset-event extras and XCom values live in Airflow's
metadata database, so the record keeps the fields a downstream task needs and caps each text
field. Every cut is listed in ``truncated``.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_reclaim.wire.events import ReclaimEvent, format_instant

MAX_RECORD_BYTES = 32 * 1024
"""Upper bound on the UTF-8 JSON size of one record."""

# Per-field caps in UTF-8 bytes. Together they stay well under MAX_RECORD_BYTES.
_DESCRIPTION_LIMIT = 4096
_MESSAGE_LIMIT = 2048
_TITLE_LIMIT = 512
_EMAIL_LIMIT = 320
_DEFAULT_TEXT_LIMIT = 256
_CUSTOM_DATA_LIMIT = 4096


def truncate_utf8(text: str, max_bytes: int) -> tuple[str, bool]:
    """Cut ``text`` to at most ``max_bytes`` UTF-8 bytes without splitting a character.

    Returns the text and whether it was cut.
    """
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text, False
    return encoded[:max_bytes].decode("utf-8", errors="ignore"), True


class _RecordBuilder:
    def __init__(self) -> None:
        self.truncated: list[str] = []

    def text(self, path: str, value: str | None, limit: int = _DEFAULT_TEXT_LIMIT) -> str | None:
        if value is None:
            return None
        result, cut = truncate_utf8(str(value), limit)
        if cut:
            self.truncated.append(path)
        return result

    def custom_data(self, event: ReclaimEvent) -> dict[str, Any]:
        custom = event.custom_data
        payload = {"data": custom.data, "errors": [str(error) for error in custom.errors]}
        size = len(json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8"))
        if size <= _CUSTOM_DATA_LIMIT:
            return json.loads(json.dumps(payload, default=str))
        self.truncated.append("custom_data")
        return {"data": {}, "errors": [*payload["errors"][:10], "TRUNCATED_BY_RECEIVER"]}


def build_record(event: ReclaimEvent) -> dict[str, Any]:
    """Build the bounded record of ``event``.

    The record contains the identity key, kind, type, meeting id, instants in UTC, the booker
    (email lowercased, name, time zone), the host, the scheduling link, the custom data as
    received, and ``truncated``, the list of fields that were cut.
    """
    builder = _RecordBuilder()
    meeting = event.meeting
    attendee = meeting.attendee
    host = meeting.host

    record: dict[str, Any] = {
        "identity_key": event.identity_key,
        "kind": event.kind.value,
        "type": builder.text("type", event.type),
        "meeting_id": event.meeting_id,
        "event_ts": format_instant(event.event_ts),
        "start_time": format_instant(meeting.start_time) if meeting.start_time else None,
        "end_time": format_instant(meeting.end_time) if meeting.end_time else None,
        "api_version": builder.text("api_version", event.api_version),
        "attendee": {
            "email": builder.text(
                "attendee.email", attendee.normalized_email if attendee else None, _EMAIL_LIMIT
            ),
            "name": builder.text("attendee.name", attendee.display_name if attendee else None),
            "time_zone": builder.text("attendee.time_zone", attendee.time_zone if attendee else None),
        },
        "host": (
            {
                "name": builder.text("host.name", host.name),
                "email": builder.text("host.email", host.email, _EMAIL_LIMIT),
                "user_id": builder.text("host.user_id", host.user_id),
            }
            if host
            else None
        ),
        "scheduling_link": {
            "id": builder.text("scheduling_link.id", meeting.scheduling_link_id),
            "title": builder.text("scheduling_link.title", meeting.scheduling_link_title, _TITLE_LIMIT),
            "description": builder.text(
                "scheduling_link.description", meeting.scheduling_link_description, _DESCRIPTION_LIMIT
            ),
        },
        "meeting_title": builder.text("meeting_title", meeting.meeting_title, _TITLE_LIMIT),
        "cancellation_message": builder.text(
            "cancellation_message", event.cancellation_message, _MESSAGE_LIMIT
        ),
        "custom_data": builder.custom_data(event),
    }
    record["truncated"] = builder.truncated

    # JSON escaping can grow a string up to six times (control characters become \uXXXX),
    # so the per-field caps alone do not bound the encoded size. Drop the largest free-text
    # fields until the record fits.
    for section, field in _DROP_ORDER:
        if record_size(record) <= MAX_RECORD_BYTES:
            break
        container = record[section] if section else record
        if container and container.get(field) is not None:
            container[field] = None
            record["truncated"].append(f"{section}.{field}" if section else field)
    return record


_DROP_ORDER = [
    ("scheduling_link", "description"),
    ("", "cancellation_message"),
    ("", "meeting_title"),
    ("scheduling_link", "title"),
    ("", "custom_data"),
]


def record_size(record: dict[str, Any]) -> int:
    """Return the size in bytes of ``record`` as compact UTF-8 JSON."""
    return len(json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
