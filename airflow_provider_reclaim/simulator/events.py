"""Simulated Reclaim events, their encoding and the identity that de-duplication uses.

Two deliveries of one event are not byte-identical when Reclaim retries, because
``webhook_sent_at`` and ``request_id`` may change. What identifies an event is its type,
``meeting.meeting_id`` and ``event_ts``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

EVENT_CREATED = "SchedulingLink.Meeting.Created"
EVENT_UPDATED = "SchedulingLink.Meeting.Updated"
EVENT_CANCELLED = "SchedulingLink.Meeting.Cancelled"
EVENT_TYPES = (EVENT_CREATED, EVENT_UPDATED, EVENT_CANCELLED)

# The version in Reclaim's documented example, and the version of payloads captured in 2026.
DOCUMENTED_API_VERSION = "v2025-09-26"
OBSERVED_API_VERSION = "v2026-04-13"

Shape = Literal["documented", "observed"]


def parse_instant(value: str) -> datetime | None:
    """Parse an ISO 8601 timestamp with ``Z`` or an offset into an aware UTC datetime.

    Returns None for a value that is not a timestamp or has no offset, so that a caller can
    fall back to comparing strings.
    """
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(timezone.utc)


class EventKey(NamedTuple):
    """Identity of one Reclaim event: its type, meeting and ``event_ts`` as sent."""

    type: str
    meeting_id: str
    event_ts: str

    @classmethod
    def from_body(cls, body: Any) -> EventKey | None:
        """Read the identity fields from a parsed body, or return None when one is missing.

        :param body: The result of ``json.loads`` on a delivery body, of any JSON type.
        """
        if not isinstance(body, dict):
            return None
        meeting = body.get("meeting")
        if not isinstance(meeting, dict):
            return None

        event_type = body.get("type")
        meeting_id = meeting.get("meeting_id")
        event_ts = body.get("event_ts")
        if not (isinstance(event_type, str) and isinstance(meeting_id, str) and isinstance(event_ts, str)):
            return None
        return cls(event_type, meeting_id, event_ts)

    def normalized(self) -> tuple[str, str, datetime | str]:
        """Return the key with ``event_ts`` as an instant, so that ``Z`` and ``+00:00`` compare equal."""
        instant = parse_instant(self.event_ts)
        return (self.type, self.meeting_id, instant if instant is not None else self.event_ts)


def encode_body(body: dict[str, Any], shape: Shape) -> bytes:
    """Serialise a body the way the simulator sends it for ``shape``.

    Documented-shape bodies escape non-ASCII characters (``\\u00eb``) and observed-shape
    bodies carry raw UTF-8 without spaces. Both spellings are sent so that a receiver which
    re-serialises JSON before checking the signature fails in tests.

    NOTE: Reclaim's real whitespace and escaping are not documented, so both choices are
    the simulator's, not a copy of Reclaim's output.
    """
    if shape == "documented":
        text = json.dumps(body, ensure_ascii=True)
    else:
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


@dataclass(frozen=True)
class SimulatedEvent:
    """One event body that Reclaim would send, with the meeting it belongs to.

    :param body: The JSON body as a dict, in the key order of the payload shape.
    :param shape: ``documented`` for the ``v2025-09-26`` example shape, ``observed`` for the
        ``v2026-04-13`` shape captured in production.
    :param meeting_index: Position of the meeting in the scenario, starting at 0.
    :param step: Position of the event in its meeting's life, 0 being ``Created``.
    """

    body: dict[str, Any]
    shape: Shape
    meeting_index: int
    step: int

    @property
    def type(self) -> str:
        """Event type, such as ``SchedulingLink.Meeting.Created``."""
        return self.body["type"]

    @property
    def meeting_id(self) -> str:
        """Value of ``meeting.meeting_id``."""
        return self.body["meeting"]["meeting_id"]

    @property
    def event_ts(self) -> str:
        """Value of ``event_ts`` as sent."""
        return self.body["event_ts"]

    @property
    def api_version(self) -> str:
        """Value of ``api_version``, which the sender copies into ``x-reclaim-api-version``."""
        return self.body["api_version"]

    @property
    def key(self) -> EventKey:
        """Identity of the event."""
        return EventKey(self.type, self.meeting_id, self.event_ts)

    def encode(self) -> bytes:
        """Serialise the body to the bytes that are signed and sent."""
        return encode_body(self.body, self.shape)
