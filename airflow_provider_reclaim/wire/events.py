"""Pydantic models of Reclaim Scheduling Link webhook events.

The models accept both payload shapes seen on the wire: the documented one (api version
``v2025-09-26``, attendee as ``{name, email}``) and the one captured in production (api version
``v2026-04-13``, attendee as ``{attendee_email, attendee_name, attendee_zone_id}``). Fields
that neither shape lists are kept (``extra="allow"``), because Reclaim adds fields over time.
"""

from __future__ import annotations

import enum
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

EVENT_TYPE_PREFIX = "SchedulingLink.Meeting."


class EventKind(str, enum.Enum):
    """The kind of change to a meeting, derived from the event ``type`` only."""

    CREATED = "created"
    RESCHEDULED = "rescheduled"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @classmethod
    def from_type(cls, event_type: str) -> EventKind:
        """Map a wire type such as ``SchedulingLink.Meeting.Updated`` to its kind."""
        return _KIND_BY_TYPE.get(event_type, cls.UNKNOWN)

    @property
    def precedence(self) -> int:
        """Rank used to order two events of one meeting with equal ``event_ts``."""
        return _PRECEDENCE[self]


_KIND_BY_TYPE = {
    "SchedulingLink.Meeting.Created": EventKind.CREATED,
    # Reclaim's help centre calls this "Rescheduled", the wire name is "Updated".
    "SchedulingLink.Meeting.Updated": EventKind.RESCHEDULED,
    "SchedulingLink.Meeting.Cancelled": EventKind.CANCELLED,
}

# With equal event_ts, a cancellation outranks a reschedule, which outranks a creation.
_PRECEDENCE = {
    EventKind.UNKNOWN: 0,
    EventKind.CREATED: 1,
    EventKind.RESCHEDULED: 2,
    EventKind.CANCELLED: 3,
}


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("time must carry an offset such as 'Z' or '+02:00'")
    return value.astimezone(timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_to_utc)]
"""A timestamp with an explicit offset, normalised to aware UTC. A naive time is invalid."""


def format_instant(value: datetime) -> str:
    """Format an aware time as ISO 8601 UTC with microseconds, e.g. ``2030-08-21T17:49:41.255000Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _OpenModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class TimeZoneRef(_OpenModel):
    """The booker's time zone as Reclaim reports it (observed shape only)."""

    id: str | None = None
    display_name: str | None = None
    abbreviation: str | None = None


class Attendee(_OpenModel):
    """The person who booked the meeting, in either the documented or the observed shape."""

    name: str | None = None
    email: str | None = None
    attendee_name: str | None = None
    attendee_email: str | None = None
    attendee_zone_id: TimeZoneRef | None = None

    @property
    def normalized_email(self) -> str | None:
        """The booker's email address, lowercased, from whichever shape carried it."""
        address = self.attendee_email or self.email
        return address.strip().lower() if address else None

    @property
    def display_name(self) -> str | None:
        """The booker's name, from whichever shape carried it."""
        return self.attendee_name or self.name

    @property
    def time_zone(self) -> str | None:
        """The booker's IANA time zone id, when Reclaim sent one."""
        return self.attendee_zone_id.id if self.attendee_zone_id else None


class Participant(_OpenModel):
    """A calendar participant. The observed shape marks the link owner with ``is_host``."""

    name: str | None = None
    email: str | None = None
    is_host: bool | None = None
    user_id: str | None = None


class CustomData(_OpenModel):
    """The ``data-`` parameters of the booking URL, with the prefix stripped, as Reclaim sent them.

    ``errors`` may contain ``TRUNCATED`` (more than five parameters, or more than 512 bytes of
    minified JSON) and ``UNSERIALIZABLE`` (a value that was not valid JSON).
    """

    data: dict[str, Any] = Field(default_factory=dict)
    errors: list[str] = Field(default_factory=list)

    @field_validator("data", mode="before")
    @classmethod
    def _null_data_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("errors", mode="before")
    @classmethod
    def _null_errors_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value


class Meeting(_OpenModel):
    """The ``meeting`` object of an event. ``meeting_id`` is the meeting's identity."""

    meeting_id: str = Field(min_length=1, max_length=200)
    participants: list[Participant] = Field(default_factory=list)
    attendee: Attendee | None = None
    start_time: UtcDatetime | None = None
    end_time: UtcDatetime | None = None
    scheduling_link_id: str | None = None
    scheduling_link_title: str | None = None
    scheduling_link_description: str | None = None
    meeting_title: str | None = None
    meeting_url: str | None = None
    ccs: str | list[str] | None = None
    message: str | None = None
    meeting_location: dict[str, Any] | None = None
    custom_data: CustomData | None = None

    @property
    def host(self) -> Participant | None:
        """The participant marked ``is_host``, else the first participant (documented shape)."""
        for participant in self.participants:
            if participant.is_host:
                return participant
        if self.participants and all(p.is_host is None for p in self.participants):
            return self.participants[0]
        return None


class ReclaimEvent(_OpenModel):
    """One Scheduling Link webhook event.

    Two deliveries of one event need not be byte-identical: a retry may carry a new
    ``webhook_sent_at`` or ``request_id``. The event's identity is its type, its meeting and
    its ``event_ts`` (see :attr:`identity_key`).
    """

    type: str = Field(min_length=1, max_length=200)
    event_ts: UtcDatetime
    webhook_sent_at: UtcDatetime | None = None
    api_version: str | None = None
    request_id: str | None = None
    meeting: Meeting
    cancellation_message: str | None = None

    @property
    def kind(self) -> EventKind:
        """Created, rescheduled, cancelled or unknown, from ``type`` alone."""
        return EventKind.from_type(self.type)

    @property
    def meeting_id(self) -> str:
        """The meeting this event belongs to."""
        return self.meeting.meeting_id

    @property
    def identity_key(self) -> str:
        """The key that identifies this event across redeliveries.

        Built from the type, the meeting id and the ``event_ts`` instant in UTC. It never uses
        ``webhook_sent_at``, ``request_id`` or a hash of the body, which change between retries.
        """
        return f"{self.type}/{self.meeting_id}/{format_instant(self.event_ts)}"

    @property
    def custom_data(self) -> CustomData:
        """The ``data-`` parameters, empty when Reclaim sent none."""
        return self.meeting.custom_data or CustomData()


def parse_event(body: bytes) -> ReclaimEvent:
    """Parse a raw webhook body into a :class:`ReclaimEvent`.

    :raises pydantic.ValidationError: The body is not JSON, or not a Scheduling Link event.
    """
    return ReclaimEvent.model_validate_json(body)
