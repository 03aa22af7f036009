"""Generate a deterministic stream of Reclaim Scheduling Link events from a scenario.

A scenario is a small JSON document (every field has a default)::

    {
      "seed": 7,
      "meetings": 12,
      "links": 3,
      "campaigns": [{"utm_source": "newsletter", "utm_campaign": "spring-launch"}],
      "plan": {"duplicates": 2, "out_of_order": 1, "burst": 3}
    }

The same scenario always produces the same events, byte for byte, because every random
choice comes from ``random.Random(seed)`` and times count from ``start``, not from the clock.
"""

from __future__ import annotations

import random
import string
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from airflow_provider_reclaim.simulator import catalogue
from airflow_provider_reclaim.simulator.events import (
    DOCUMENTED_API_VERSION,
    EVENT_CANCELLED,
    EVENT_CREATED,
    EVENT_UPDATED,
    OBSERVED_API_VERSION,
    Shape,
    SimulatedEvent,
)

# Reclaim delivers at most five ``data-`` parameters per booking.
MAX_CUSTOM_DATA_KEYS = 5

_DEFAULT_START = datetime(2030, 5, 6, 8, 0, tzinfo=timezone.utc)


class Campaign(BaseModel):
    """Marketing attribution carried by ``data-`` parameters on a booking URL.

    :param utm_source: Delivered as ``custom_data.data.utm_source``.
    :param utm_campaign: Delivered as ``custom_data.data.utm_campaign``.
    :param extra: Further ``data-`` parameters, such as ``{"utm_medium": "social"}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    utm_source: str = Field(min_length=1)
    utm_campaign: str = Field(min_length=1)
    extra: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_key_count(self) -> Campaign:
        count = 2 + len(self.extra)
        if count > MAX_CUSTOM_DATA_KEYS:
            raise ValueError(
                f"a campaign has {count} data parameters, but Reclaim delivers at most "
                f"{MAX_CUSTOM_DATA_KEYS}. Remove entries from 'extra'."
            )
        return self

    def custom_data(self) -> dict[str, str]:
        """Return the ``custom_data.data`` object that this campaign produces."""
        return {"utm_source": self.utm_source, "utm_campaign": self.utm_campaign, **self.extra}


class PlanOptions(BaseModel):
    """Extra deliveries that a plan adds on top of one in-order delivery per event.

    :param duplicates: Events delivered a second time with a new ``webhook_sent_at`` and
        ``request_id`` but the same type, meeting and ``event_ts``.
    :param out_of_order: Meetings whose last event is delivered before their ``Created``.
    :param burst: Final events of this many different meetings, sent concurrently at the end
        of the plan with nothing after them. 0 turns the burst off.
    :param tampered: Add one delivery whose body was changed after signing.
    :param not_json: Add one correctly signed delivery whose body is not JSON.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    duplicates: int = Field(2, ge=0)
    out_of_order: int = Field(1, ge=0)
    burst: int = Field(3, ge=0)
    tampered: bool = True
    not_json: bool = True

    @model_validator(mode="after")
    def _check_burst(self) -> PlanOptions:
        if self.burst == 1:
            raise ValueError("burst must be 0 (no burst) or at least 2 deliveries, got 1")
        return self


def _default_campaigns() -> list[Campaign]:
    return [
        Campaign(utm_source="newsletter", utm_campaign="spring-launch"),
        Campaign(utm_source="linkedin", utm_campaign="q3-webinar", extra={"utm_medium": "social"}),
        Campaign(utm_source="partner", utm_campaign="reseller-2030"),
    ]


def _share(default: float) -> Any:
    return Field(default, ge=0.0, le=1.0)


class Scenario(BaseModel):
    """Description of the bookings to simulate. Shares are probabilities from 0 to 1.

    :param seed: Seed of ``random.Random``. The same scenario gives the same events.
    :param meetings: Number of meetings booked.
    :param links: Number of scheduling links the meetings are booked through.
    :param campaigns: Campaigns that bookings may carry as ``custom_data``.
    :param start: Time of the earliest possible booking.
    :param booking_window_days: Bookings are spread over this many days after ``start``.
    :param observed_share: Share of meetings sent in the observed ``v2026-04-13`` shape.
        The others use the documented ``v2025-09-26`` shape.
    :param update_share: Share of meetings rescheduled at least once.
    :param max_updates: Maximum number of reschedules of one meeting.
    :param cancel_share: Share of meetings cancelled in the end.
    :param campaign_share: Share of meetings booked through a campaign URL.
    :param truncated_share: Share of campaign meetings whose custom data lists ``TRUNCATED``.
    :param non_ascii_share: Share of bookers with non-ASCII names.
    :param observed_metadata_share: Share of observed-shape events that carry
        ``webhook_sent_at`` and ``request_id``.
    :param plan: Extra deliveries for the delivery plan.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    meetings: int = Field(12, ge=1, le=10_000)
    links: int = Field(3, ge=1, le=100)
    campaigns: list[Campaign] = Field(default_factory=_default_campaigns)
    start: AwareDatetime = _DEFAULT_START
    booking_window_days: float = Field(7.0, gt=0, le=365)
    observed_share: float = _share(0.5)
    update_share: float = _share(0.4)
    max_updates: int = Field(2, ge=1, le=5)
    cancel_share: float = _share(0.25)
    campaign_share: float = _share(0.6)
    truncated_share: float = _share(0.1)
    non_ascii_share: float = _share(0.3)
    observed_metadata_share: float = _share(0.5)
    plan: PlanOptions = Field(default_factory=PlanOptions)

    @classmethod
    def from_json_file(cls, path: str | Path) -> Scenario:
        """Load and validate a scenario from a JSON file.

        :raises pydantic.ValidationError: A field is unknown or out of range.
        """
        return cls.model_validate_json(Path(path).read_bytes())


@dataclass(frozen=True)
class _Link:
    template: catalogue.LinkTemplate
    title: str
    link_id: str
    host: catalogue.Host


@dataclass(frozen=True)
class _Meeting:
    """Everything that stays the same across the events of one meeting."""

    index: int
    shape: Shape
    meeting_id: str
    link: _Link
    booker: catalogue.Person
    zone: catalogue.Zone
    co_host: catalogue.Host | None
    campaign: Campaign | None
    truncated: bool
    message: str
    ccs: str
    meeting_url: str | None
    include_link_id: bool


def generate_events(scenario: Scenario) -> list[SimulatedEvent]:
    """Generate every event of the scenario, sorted by ``event_ts``.

    Each meeting is created once, rescheduled up to ``max_updates`` times and possibly
    cancelled. Its events have strictly increasing ``event_ts``.
    """
    rng = random.Random(scenario.seed)
    links = _make_links(scenario.links, rng)

    events: list[SimulatedEvent] = []
    for index in range(scenario.meetings):
        meeting = _make_meeting(index, scenario, links, rng)
        events.extend(_meeting_events(meeting, scenario, rng))

    events.sort(key=lambda event: (_utc(event.event_ts), event.meeting_index, event.step))
    return events


def random_uuid(rng: random.Random) -> str:
    """Return a version 4 UUID drawn from ``rng`` instead of the operating system."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def format_utc(moment: datetime, *, milliseconds: bool) -> str:
    """Format an instant as ``2030-05-06T08:00:00Z``, or with ``.123`` milliseconds."""
    moment = moment.astimezone(timezone.utc)
    if milliseconds:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _make_links(count: int, rng: random.Random) -> list[_Link]:
    links = []
    for index in range(count):
        template = catalogue.LINKS[index % len(catalogue.LINKS)]
        round_number = index // len(catalogue.LINKS)
        title = template.title if round_number == 0 else f"{template.title} ({round_number + 1})"
        host = catalogue.HOSTS[index % len(catalogue.HOSTS)]
        links.append(_Link(template, title, random_uuid(rng), host))
    return links


def _make_meeting(index: int, scenario: Scenario, links: list[_Link], rng: random.Random) -> _Meeting:
    shape: Shape = "observed" if rng.random() < scenario.observed_share else "documented"
    link = rng.choice(links)

    if rng.random() < scenario.non_ascii_share:
        booker = rng.choice(catalogue.NON_ASCII_BOOKERS)
    else:
        booker = rng.choice(catalogue.ASCII_BOOKERS)

    campaign = None
    if scenario.campaigns and rng.random() < scenario.campaign_share:
        campaign = rng.choice(scenario.campaigns)
    truncated = campaign is not None and rng.random() < scenario.truncated_share

    if shape == "documented":
        meeting_id = random_uuid(rng)
    else:
        meeting_id = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(12))

    other_hosts = [host for host in catalogue.HOSTS if host != link.host]
    co_host = rng.choice(other_hosts) if rng.random() < 0.2 else None

    # NOTE: the captured payloads only show an empty ``ccs``. A comma-separated list is
    # assumed for the non-empty case.
    ccs = ", ".join(rng.sample(catalogue.CC_ADDRESSES, rng.randint(1, 2))) if rng.random() < 0.2 else ""

    letters = string.ascii_lowercase
    code = "-".join("".join(rng.choice(letters) for _ in range(size)) for size in (3, 4, 3))
    meeting_url = f"https://meet.example.com/{code}"
    if shape == "observed" and rng.random() < 0.5:
        meeting_url = None

    return _Meeting(
        index=index,
        shape=shape,
        meeting_id=meeting_id,
        link=link,
        booker=booker,
        zone=rng.choice(catalogue.ZONES),
        co_host=co_host,
        campaign=campaign,
        truncated=truncated,
        message=rng.choice(catalogue.MESSAGES),
        ccs=ccs,
        meeting_url=meeting_url,
        include_link_id=shape == "documented" or rng.random() < 0.5,
    )


def _pick_slot(after: datetime, rng: random.Random) -> datetime:
    """Pick a half-hour slot between 08:00 and 16:30 UTC, 1 to 14 days after ``after``."""
    day = (after + timedelta(days=rng.randint(1, 14))).date()
    return datetime(
        day.year, day.month, day.day, rng.randint(8, 16), rng.choice((0, 30)), tzinfo=timezone.utc
    )


def _meeting_events(meeting: _Meeting, scenario: Scenario, rng: random.Random) -> list[SimulatedEvent]:
    window_seconds = scenario.booking_window_days * 86_400
    event_time = scenario.start.astimezone(timezone.utc) + timedelta(seconds=rng.uniform(0, window_seconds))
    duration = timedelta(minutes=meeting.link.template.duration_minutes)
    slot = _pick_slot(event_time, rng)

    timeline: list[tuple[str, datetime, datetime]] = [(EVENT_CREATED, event_time, slot)]

    updates = rng.randint(1, scenario.max_updates) if rng.random() < scenario.update_share else 0
    for _ in range(updates):
        event_time += timedelta(seconds=rng.uniform(600, 36 * 3600))
        new_slot = _pick_slot(event_time, rng)
        while new_slot == slot:
            new_slot = _pick_slot(event_time, rng)
        slot = new_slot
        timeline.append((EVENT_UPDATED, event_time, slot))

    if rng.random() < scenario.cancel_share:
        event_time += timedelta(seconds=rng.uniform(600, 24 * 3600))
        timeline.append((EVENT_CANCELLED, event_time, slot))

    events = []
    for step, (event_type, when, start_time) in enumerate(timeline):
        body = _build_body(meeting, event_type, when, start_time, start_time + duration, step, scenario, rng)
        events.append(SimulatedEvent(body=body, shape=meeting.shape, meeting_index=meeting.index, step=step))
    return events


def _format_meeting_time(moment: datetime, zone: catalogue.Zone | None) -> str:
    """Format a meeting time in UTC with ``Z``, or in ``zone`` with its offset (``+02:00``)."""
    if zone is None:
        return format_utc(moment, milliseconds=False)
    return moment.astimezone(ZoneInfo(zone.id)).isoformat(timespec="seconds")


def _mixed_case(email: str) -> str:
    """Capitalise each dot-separated part, as in ``Grace.Hopper@Example.net``."""
    local, _, domain = email.partition("@")
    return ".".join(part.capitalize() for part in local.split(".")) + "@" + domain.capitalize()


def _custom_data(meeting: _Meeting) -> dict[str, Any]:
    data = meeting.campaign.custom_data() if meeting.campaign is not None else {}
    return {"data": data, "errors": ["TRUNCATED"] if meeting.truncated else []}


def _build_body(
    meeting: _Meeting,
    event_type: str,
    event_time: datetime,
    start_time: datetime,
    end_time: datetime,
    step: int,
    scenario: Scenario,
    rng: random.Random,
) -> dict[str, Any]:
    """Build one event body in the key order of the meeting's payload shape."""
    if meeting.shape == "documented":
        return _documented_body(meeting, event_type, event_time, start_time, end_time, rng)
    return _observed_body(meeting, event_type, event_time, start_time, end_time, step, scenario, rng)


def _documented_body(
    meeting: _Meeting,
    event_type: str,
    event_time: datetime,
    start_time: datetime,
    end_time: datetime,
    rng: random.Random,
) -> dict[str, Any]:
    # The documented example has whole seconds, so the event time is truncated to them.
    event_time = event_time.replace(microsecond=0)
    sent_at = event_time + timedelta(seconds=rng.randint(1, 3))
    link = meeting.link

    return {
        "type": event_type,
        "event_ts": format_utc(event_time, milliseconds=False),
        "webhook_sent_at": format_utc(sent_at, milliseconds=False),
        "api_version": DOCUMENTED_API_VERSION,
        "request_id": random_uuid(rng),
        "meeting": {
            "participants": [{"name": link.host.name, "email": link.host.email}],
            "attendee": {"name": meeting.booker.name, "email": meeting.booker.email},
            "start_time": format_utc(start_time, milliseconds=False),
            "end_time": format_utc(end_time, milliseconds=False),
            "scheduling_link_id": link.link_id,
            "scheduling_link_title": link.title,
            "scheduling_link_description": link.template.description,
            "meeting_id": meeting.meeting_id,
            "meeting_title": f"{link.template.title} with {meeting.booker.name}",
            "meeting_url": meeting.meeting_url,
            "custom_data": _custom_data(meeting),
        },
    }


def _observed_body(
    meeting: _Meeting,
    event_type: str,
    event_time: datetime,
    start_time: datetime,
    end_time: datetime,
    step: int,
    scenario: Scenario,
    rng: random.Random,
) -> dict[str, Any]:
    link = meeting.link
    with_metadata = rng.random() < scenario.observed_metadata_share
    # Each event independently spells its times in the booker's zone or in UTC.
    time_zone = meeting.zone if rng.random() < 0.5 else None
    # The captured Created event spelled the booker's address in mixed case, later ones in lower case.
    email = _mixed_case(meeting.booker.email) if step == 0 and rng.random() < 0.3 else meeting.booker.email
    with_custom_data = meeting.campaign is not None and rng.random() < 0.7

    participants = [
        {"is_host": True, "user_id": link.host.user_id, "email": link.host.email, "name": link.host.name}
    ]
    if meeting.co_host is not None:
        co_host = meeting.co_host
        participants.append(
            {"is_host": False, "user_id": co_host.user_id, "email": co_host.email, "name": co_host.name}
        )

    body: dict[str, Any] = {"type": event_type, "event_ts": format_utc(event_time, milliseconds=True)}
    if with_metadata:
        sent_at = event_time + timedelta(milliseconds=rng.randint(150, 2500))
        body["webhook_sent_at"] = format_utc(sent_at, milliseconds=True)
    body["api_version"] = OBSERVED_API_VERSION
    if with_metadata:
        body["request_id"] = random_uuid(rng)

    details: dict[str, Any] = {
        "participants": participants,
        "attendee": {
            "attendee_email": email,
            "attendee_name": meeting.booker.name,
            "attendee_zone_id": {
                "id": meeting.zone.id,
                "display_name": meeting.zone.display_name,
                "abbreviation": meeting.zone.abbreviation,
            },
        },
        "start_time": _format_meeting_time(start_time, time_zone),
        "end_time": _format_meeting_time(end_time, time_zone),
    }
    if meeting.include_link_id:
        details["scheduling_link_id"] = link.link_id
    details["scheduling_link_title"] = link.title
    details["scheduling_link_description"] = link.template.description
    details["meeting_id"] = meeting.meeting_id
    details["meeting_title"] = f"{link.host.name} and {meeting.booker.name} - {link.template.title}"
    if meeting.meeting_url is not None:
        details["meeting_url"] = meeting.meeting_url
    details["ccs"] = meeting.ccs
    details["message"] = meeting.message
    details["meeting_location"] = dict(catalogue.CONFERENCE_LOCATION)
    if with_custom_data:
        details["custom_data"] = _custom_data(meeting)
    body["meeting"] = details

    if event_type == EVENT_CANCELLED:
        body["cancellation_message"] = rng.choice(catalogue.CANCELLATION_MESSAGES)
    return body
