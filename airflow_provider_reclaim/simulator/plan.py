"""Turn simulated events into an ordered plan of deliveries, each with its expected outcome.

A plan delivers every event once, in ``event_ts`` order, and adds the cases a receiver must
handle: duplicates, out-of-order deliveries, a burst, a tampered body and a body that is
not JSON (see :class:`PlanOptions`). The signature is not part of a :class:`Delivery`,
because the secret is chosen when sending.

Expected outcomes assume a receiver whose de-duplication store is empty when the plan
starts. Sending the same plan twice to one receiver turns the second round's accepted
deliveries into duplicates.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from airflow_provider_reclaim.simulator.events import EventKey, SimulatedEvent, encode_body, parse_instant
from airflow_provider_reclaim.simulator.scenario import (
    PlanOptions,
    Scenario,
    format_utc,
    generate_events,
    random_uuid,
)
from airflow_provider_reclaim.wire.signature import SIGNATURE_HEADER, sign

API_VERSION_HEADER = "x-reclaim-api-version"
WEBHOOK_TYPE_HEADER = "x-reclaim-webhook-type"
CONTENT_TYPE = "application/json"


class Outcome(str, Enum):
    """Response that a correct receiver gives to a delivery."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"
    REJECTED = "rejected"

    @property
    def http_status(self) -> int:
        """HTTP status of the response: 200, 202 for quarantined, 401 for rejected."""
        return _HTTP_STATUS[self]


_HTTP_STATUS = {
    Outcome.ACCEPTED: 200,
    Outcome.DUPLICATE: 200,
    Outcome.QUARANTINED: 202,
    Outcome.REJECTED: 401,
}


class Category(str, Enum):
    """Reason a delivery is in the plan."""

    IN_ORDER = "in-order"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out-of-order"
    BURST = "burst"
    TAMPERED = "tampered"
    NOT_JSON = "not-json"
    FILE = "file"


@dataclass(frozen=True)
class Delivery:
    """One HTTP request of a plan.

    :param label: Human-readable name, unique within a plan, such as
        ``"007 duplicate Updated 3c2b1a09-..."``.
    :param category: Reason the delivery is in the plan.
    :param body: Bytes sent as the request body.
    :param headers: Request headers without the signature and ``User-Agent``, which the
        sender adds.
    :param expected: Response that a correct receiver gives.
    :param key: Identity of the event in ``body``, or None when the body has none.
    :param burst: Group id of deliveries that the sender sends concurrently, or None.
    :param signed_body: Bytes the signature is computed over when they differ from
        ``body``. Only a tampered delivery sets it.
    """

    label: str
    category: Category
    body: bytes
    headers: Mapping[str, str]
    expected: Outcome
    key: EventKey | None = None
    burst: int | None = None
    signed_body: bytes | None = field(default=None, repr=False)

    def signature(self, secret: str | bytes) -> str:
        """Return the ``x-reclaim-signature-256`` value for this delivery."""
        signed = self.body if self.signed_body is None else self.signed_body
        return sign(signed, secret)

    def request_headers(self, secret: str | bytes, user_agent: str) -> dict[str, str]:
        """Return every header of the request, the signature and ``User-Agent`` included."""
        headers = dict(self.headers)
        headers[SIGNATURE_HEADER] = self.signature(secret)
        headers["User-Agent"] = user_agent
        return headers


def reclaim_headers(api_version: str | None, webhook_type: str | None) -> dict[str, str]:
    """Return the unsigned headers Reclaim sends, leaving out those whose value is None."""
    headers = {"Content-Type": CONTENT_TYPE}
    if api_version is not None:
        headers[API_VERSION_HEADER] = api_version
    if webhook_type is not None:
        headers[WEBHOOK_TYPE_HEADER] = webhook_type
    return headers


def plan_scenario(scenario: Scenario) -> list[Delivery]:
    """Generate the scenario's events and build the delivery plan its ``plan`` options ask for."""
    return build_plan(generate_events(scenario), scenario.plan, seed=scenario.seed)


@dataclass
class _Draft:
    """A delivery before its position, label and expected outcome are known."""

    category: Category
    body: bytes
    headers: dict[str, str]
    key: EventKey | None
    event: SimulatedEvent
    signed_body: bytes | None = None
    burst: int | None = None


def build_plan(events: Sequence[SimulatedEvent], options: PlanOptions, *, seed: int) -> list[Delivery]:
    """Build the delivery plan for ``events``, which must be sorted by ``event_ts``.

    :param events: Output of :func:`generate_events`.
    :param options: Extra deliveries to add.
    :param seed: Seed for the choices of the plan. The same arguments give the same plan.
    :raises ValueError: The events are too few for the requested options, for example fewer
        meetings with more than one event than ``options.out_of_order``.
    """
    # A string seed keeps the plan's choices independent of the event generator's sequence.
    rng = random.Random(f"reclaim-plan:{seed}")

    by_meeting: dict[int, list[SimulatedEvent]] = {}
    for event in events:
        by_meeting.setdefault(event.meeting_index, []).append(event)

    moved_meetings = _pick_out_of_order_meetings(by_meeting, options.out_of_order, rng)
    burst_meetings = _pick_burst_meetings(by_meeting, moved_meetings, options.burst, rng)
    burst_events = [by_meeting[index][-1] for index in burst_meetings]
    burst_ids = {id(event) for event in burst_events}

    stream = [_event_draft(event, Category.IN_ORDER) for event in events if id(event) not in burst_ids]
    _move_out_of_order(stream, by_meeting, moved_meetings)
    _insert_duplicates(stream, moved_meetings, options.duplicates, rng)

    if options.tampered:
        stream.insert(rng.randint(0, len(stream)), _tampered_draft(rng.choice(events)))
    if options.not_json:
        stream.insert(rng.randint(0, len(stream)), _not_json_draft(rng.choice(events)))

    burst = sorted(burst_events, key=lambda event: parse_instant(event.event_ts) or event.event_ts)
    for event in burst:
        draft = _event_draft(event, Category.BURST)
        draft.burst = 0
        stream.append(draft)

    return _finish(stream)


def _pick_out_of_order_meetings(
    by_meeting: Mapping[int, list[SimulatedEvent]], count: int, rng: random.Random
) -> list[int]:
    candidates = sorted(index for index, meeting_events in by_meeting.items() if len(meeting_events) > 1)
    if count > len(candidates):
        raise ValueError(
            f"out_of_order={count} needs {count} meetings with more than one event, but the scenario "
            f"has {len(candidates)}. Raise meetings, update_share or cancel_share, or lower out_of_order."
        )
    return sorted(rng.sample(candidates, count))


def _pick_burst_meetings(
    by_meeting: Mapping[int, list[SimulatedEvent]], moved: Iterable[int], count: int, rng: random.Random
) -> list[int]:
    candidates = sorted(set(by_meeting) - set(moved))
    if count > len(candidates):
        raise ValueError(
            f"burst={count} needs {count} meetings that are not delivered out of order, but the "
            f"scenario has {len(candidates)}. Raise meetings, or lower burst or out_of_order."
        )
    return sorted(rng.sample(candidates, count))


def _event_draft(event: SimulatedEvent, category: Category) -> _Draft:
    return _Draft(
        category=category,
        body=event.encode(),
        headers=reclaim_headers(event.api_version, event.type),
        key=event.key,
        event=event,
    )


def _move_out_of_order(
    stream: list[_Draft], by_meeting: Mapping[int, list[SimulatedEvent]], moved: list[int]
) -> None:
    """Move the last event of each meeting in ``moved`` to just before its ``Created``."""
    for meeting_index in moved:
        first = by_meeting[meeting_index][0]
        last = by_meeting[meeting_index][-1]
        position = next(i for i, draft in enumerate(stream) if draft.event is last)
        draft = stream.pop(position)
        draft.category = Category.OUT_OF_ORDER
        target = next(i for i, other in enumerate(stream) if other.event is first)
        stream.insert(target, draft)


def _insert_duplicates(stream: list[_Draft], moved: list[int], count: int, rng: random.Random) -> None:
    """Insert ``count`` redeliveries, each one to four positions after its original.

    Only events that carry ``webhook_sent_at`` are redelivered, so that the change to that
    field is visible. Meetings delivered out of order are left alone to keep the cases apart.
    """
    candidates = [
        draft.event
        for draft in stream
        if draft.category == Category.IN_ORDER
        and draft.event.meeting_index not in moved
        and "webhook_sent_at" in draft.event.body
    ]
    if count > len(candidates):
        raise ValueError(
            f"duplicates={count} needs {count} in-order events with webhook_sent_at, but the plan has "
            f"{len(candidates)}. Raise meetings, or lower observed_share or duplicates."
        )

    for original in rng.sample(candidates, count):
        position = next(i for i, draft in enumerate(stream) if draft.event is original)
        body = _redelivered_body(original.body, rng)
        duplicate = _Draft(
            category=Category.DUPLICATE,
            body=encode_body(body, original.shape),
            headers=reclaim_headers(original.api_version, original.type),
            key=EventKey.from_body(body),
            event=original,
        )
        stream.insert(min(position + rng.randint(1, 4), len(stream)), duplicate)


def _redelivered_body(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Copy a body as a retry would send it: later ``webhook_sent_at``, new ``request_id``."""
    redelivered = copy.deepcopy(body)
    sent_at = parse_instant(body["webhook_sent_at"])
    if sent_at is None:
        raise ValueError(f"webhook_sent_at {body['webhook_sent_at']!r} is not a timestamp with an offset")

    # Reclaim retries with exponential backoff, so a redelivery comes seconds to minutes later.
    retry_delay = timedelta(seconds=rng.choice((2, 4, 8, 16, 32, 64)), milliseconds=rng.randint(0, 999))
    with_milliseconds = "." in body["webhook_sent_at"]
    redelivered["webhook_sent_at"] = format_utc(sent_at + retry_delay, milliseconds=with_milliseconds)
    if "request_id" in redelivered:
        redelivered["request_id"] = random_uuid(rng)
    return redelivered


def _tampered_draft(event: SimulatedEvent) -> _Draft:
    """Sign the event's bytes, then change the booker's address in the body that is sent."""
    body = copy.deepcopy(event.body)
    attendee = body["meeting"]["attendee"]
    email_field = "email" if "email" in attendee else "attendee_email"
    attendee[email_field] = "someone.else@example.net"

    return _Draft(
        category=Category.TAMPERED,
        body=encode_body(body, event.shape),
        headers=reclaim_headers(event.api_version, event.type),
        key=EventKey.from_body(body),
        event=event,
        signed_body=event.encode(),
    )


def _not_json_draft(event: SimulatedEvent) -> _Draft:
    """Cut the event's JSON text in half, as a proxy that drops a connection would."""
    text = event.encode().decode("utf-8")
    return _Draft(
        category=Category.NOT_JSON,
        body=text[: len(text) // 2].encode("utf-8"),
        headers=reclaim_headers(event.api_version, event.type),
        key=None,
        event=event,
    )


def _finish(stream: list[_Draft]) -> list[Delivery]:
    """Number the drafts, label them and compute the expected outcome of each."""
    deliveries = []
    for position, draft in enumerate(stream):
        short_type = draft.event.type.rsplit(".", 1)[-1]
        label = f"{position:03d} {draft.category.value} {short_type} {draft.event.meeting_id}"
        deliveries.append(
            Delivery(
                label=label,
                category=draft.category,
                body=draft.body,
                headers=draft.headers,
                expected=Outcome.ACCEPTED,
                key=draft.key,
                burst=draft.burst,
                signed_body=draft.signed_body,
            )
        )
    return assign_expected_outcomes(deliveries)


def assign_expected_outcomes(deliveries: Sequence[Delivery]) -> list[Delivery]:
    """Return copies of ``deliveries`` with ``expected`` set from their order.

    A tampered delivery is rejected and a body without an event identity is quarantined.
    The first delivery of each identity is accepted and later ones are duplicates, with
    ``event_ts`` compared as an instant.

    NOTE: a JSON body that lacks ``type``, ``meeting.meeting_id`` or ``event_ts`` is assumed
    to be quarantined like a body that is not JSON.
    """
    seen: set[tuple[str, str, datetime | str]] = set()
    result = []
    for delivery in deliveries:
        if delivery.category == Category.TAMPERED:
            expected = Outcome.REJECTED
        elif delivery.key is None:
            expected = Outcome.QUARANTINED
        elif delivery.key.normalized() in seen:
            expected = Outcome.DUPLICATE
        else:
            seen.add(delivery.key.normalized())
            expected = Outcome.ACCEPTED
        result.append(replace(delivery, expected=expected))
    return result


def deliveries_from_file(
    path: str | Path,
    *,
    expected: Outcome | None = None,
    api_version: str | None = None,
    webhook_type: str | None = None,
) -> list[Delivery]:
    """Build deliveries that send JSON files byte for byte.

    The file is parsed only to read ``api_version`` and ``type`` for the headers and the event
    identity. The body sent is the file's exact bytes, never a re-serialisation.

    :param path: A file, or a folder whose ``*.json`` files are sent in name order.
    :param expected: Expected outcome of every delivery. By default it is computed as in
        :func:`assign_expected_outcomes`.
    :param api_version: Value of ``x-reclaim-api-version`` instead of the body's ``api_version``.
        The header is left out when neither is available.
    :param webhook_type: Value of ``x-reclaim-webhook-type`` instead of the body's ``type``.
    :raises FileNotFoundError: ``path`` does not exist.
    :raises ValueError: ``path`` is a folder without ``*.json`` files.
    """
    source = Path(path)
    if source.is_dir():
        files = sorted(source.glob("*.json"))
        if not files:
            raise ValueError(f"folder {source} contains no *.json files")
    elif source.exists():
        files = [source]
    else:
        raise FileNotFoundError(f"body file not found: {source}")

    deliveries = []
    for position, file in enumerate(files):
        body = file.read_bytes()
        parsed = _parse_json(body)
        body_fields = parsed if isinstance(parsed, dict) else {}
        body_api_version = body_fields.get("api_version")
        body_type = body_fields.get("type")

        headers = reclaim_headers(
            api_version if api_version is not None else _string_or_none(body_api_version),
            webhook_type if webhook_type is not None else _string_or_none(body_type),
        )
        deliveries.append(
            Delivery(
                label=f"{position:03d} file {file.name}",
                category=Category.FILE,
                body=body,
                headers=headers,
                expected=Outcome.ACCEPTED,
                key=EventKey.from_body(parsed),
            )
        )

    if expected is not None:
        return [replace(delivery, expected=expected) for delivery in deliveries]
    return assign_expected_outcomes(deliveries)


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None


def _string_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
