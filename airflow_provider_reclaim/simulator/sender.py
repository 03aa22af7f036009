"""POST planned deliveries to a receiver the way Reclaim does.

Each request carries ``Content-Type: application/json``, the ``x-reclaim-signature-256``
signature of the body, ``x-reclaim-api-version`` and ``x-reclaim-webhook-type`` copied from
the body, and a ``User-Agent`` naming the simulator. A 429 or 503 response is retried after
its ``Retry-After`` delay, a bounded number of times. Redirects are not followed, so every
request goes to the URL the caller passed.
"""

from __future__ import annotations

import email.utils
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata

import requests

from airflow_provider_reclaim.simulator.events import EventKey
from airflow_provider_reclaim.simulator.plan import Category, Delivery, Outcome

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 503})

# Maximum time the burst threads wait for each other before sending anyway.
_BURST_BARRIER_TIMEOUT_S = 5.0


def _package_version() -> str:
    try:
        return metadata.version("airflow-provider-reclaim")
    except metadata.PackageNotFoundError:
        return "0"


USER_AGENT = f"airflow-provider-reclaim-simulator/{_package_version()}"


@dataclass(frozen=True)
class DeliveryResult:
    """Outcome of sending one delivery: the last response or error, timing and attempts.

    :param label: ``Delivery.label``.
    :param category: ``Delivery.category``.
    :param key: Identity of the event in the body, or None.
    :param expected: Response that a correct receiver gives.
    :param http_status: Status of the last response, or None when no response arrived.
    :param json_status: The ``status`` string of a JSON object response body, or None.
    :param elapsed_ms: Time from the first attempt to the end of the last, retry waits included.
    :param started_ms: Time from the start of :func:`send` to the first attempt.
    :param attempts: Number of requests made, retries included.
    :param error: Connection, TLS or timeout error, or the reason a retry was not made.
    :param reason: The ``reason`` string of a JSON object response body, such as
        ``signature_mismatch``, or None.
    """

    label: str
    category: Category
    key: EventKey | None
    expected: Outcome
    http_status: int | None
    json_status: str | None
    elapsed_ms: float
    started_ms: float
    attempts: int
    error: str | None = None
    reason: str | None = None

    @property
    def matches_expected(self) -> bool:
        """Whether the response has the expected status, and the expected JSON status on a 200."""
        if self.http_status != self.expected.http_status:
            return False
        if self.expected in (Outcome.ACCEPTED, Outcome.DUPLICATE):
            return self.json_status == self.expected.value
        return True


@dataclass(frozen=True)
class _SendSettings:
    url: str
    secret: str | bytes
    verify: bool | str
    timeout: float
    max_retries: int
    max_retry_after: float
    retry_backoff: float
    user_agent: str
    sleep: Callable[[float], None]


def send(
    url: str,
    deliveries: Sequence[Delivery],
    secret: str | bytes,
    *,
    verify: bool | str | os.PathLike[str] = True,
    timeout: float = 10.0,
    max_retries: int = 3,
    max_retry_after: float = 30.0,
    retry_backoff: float = 1.0,
    interval: float = 0.0,
    concurrent_bursts: bool = True,
    user_agent: str = USER_AGENT,
    sleep: Callable[[float], None] = time.sleep,
) -> list[DeliveryResult]:
    """POST every delivery to ``url`` in plan order and return one result per delivery.

    Deliveries next to each other with the same ``burst`` id are sent from one thread each,
    released together by a barrier, so they start within a few milliseconds of each other.
    An HTTP error status and any ``requests`` exception (timeout, connection or TLS error)
    are reported in the result, not raised.

    :param url: Receiver endpoint. There is no default, and redirects are not followed.
    :param deliveries: The plan, for example from ``plan_scenario`` or ``deliveries_from_file``.
    :param secret: Webhook secret that signs each body.
    :param verify: True to verify TLS against the default CA bundle, a path to a CA bundle,
        or False to accept any certificate (for self-signed test servers only).
    :param timeout: Seconds to wait for the connection and for the response of each request.
    :param max_retries: Maximum number of retries after a 429 or 503 response.
    :param max_retry_after: Maximum seconds to wait before a retry. A longer ``Retry-After``
        ends the retries, and the 429 or 503 is reported.
    :param retry_backoff: Seconds to wait before the first retry when the response has no
        valid ``Retry-After``. The wait doubles with each retry.
    :param interval: Seconds to pause between deliveries that are not part of a burst.
    :param concurrent_bursts: False sends burst deliveries one after another.
    :param user_agent: Value of the ``User-Agent`` header.
    :param sleep: Function that waits, replaceable in tests.
    """
    settings = _SendSettings(
        url=url,
        secret=secret,
        verify=os.fspath(verify) if isinstance(verify, os.PathLike) else verify,
        timeout=timeout,
        max_retries=max_retries,
        max_retry_after=max_retry_after,
        retry_backoff=retry_backoff,
        user_agent=user_agent,
        sleep=sleep,
    )
    if verify is False:
        logger.warning("TLS certificate verification is off for %s", url)

    origin = time.perf_counter()
    results: list[DeliveryResult] = []

    with requests.Session() as session:
        for group in _group_bursts(deliveries):
            if results and interval > 0:
                sleep(interval)

            if len(group) > 1 and concurrent_bursts:
                results.extend(_send_burst(group, settings, origin))
            else:
                results.extend(_deliver(session, delivery, settings, origin) for delivery in group)

    return results


def _group_bursts(deliveries: Sequence[Delivery]) -> list[list[Delivery]]:
    """Split the plan into single deliveries and runs of deliveries with one burst id."""
    groups: list[list[Delivery]] = []
    for delivery in deliveries:
        previous = groups[-1] if groups else None
        if delivery.burst is not None and previous and previous[0].burst == delivery.burst:
            previous.append(delivery)
        else:
            groups.append([delivery])
    return groups


def _send_burst(group: list[Delivery], settings: _SendSettings, origin: float) -> list[DeliveryResult]:
    """Send ``group`` from one thread per delivery, all released by one barrier."""
    barrier = threading.Barrier(len(group), timeout=_BURST_BARRIER_TIMEOUT_S)
    logger.info("sending a burst of %d deliveries", len(group))

    def deliver_after_barrier(delivery: Delivery) -> DeliveryResult:
        # requests.Session is not documented as thread-safe, so each thread has its own.
        with requests.Session() as session:
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                logger.warning(
                    "burst barrier broke, sending %s without waiting for the others", delivery.label
                )
            return _deliver(session, delivery, settings, origin)

    with ThreadPoolExecutor(max_workers=len(group), thread_name_prefix="reclaim-burst") as pool:
        return list(pool.map(deliver_after_barrier, group))


def _deliver(
    session: requests.Session, delivery: Delivery, settings: _SendSettings, origin: float
) -> DeliveryResult:
    """POST one delivery, retrying after 429 and 503 responses."""
    headers = delivery.request_headers(settings.secret, settings.user_agent)
    started = time.perf_counter()
    attempts = 0

    def result(
        status: int | None, json_status: str | None, error: str | None = None, reason: str | None = None
    ) -> DeliveryResult:
        return DeliveryResult(
            label=delivery.label,
            category=delivery.category,
            key=delivery.key,
            expected=delivery.expected,
            http_status=status,
            json_status=json_status,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            started_ms=(started - origin) * 1000,
            attempts=attempts,
            error=error,
            reason=reason,
        )

    while True:
        attempts += 1
        try:
            response = session.post(
                settings.url,
                data=delivery.body,
                headers=headers,
                timeout=settings.timeout,
                verify=settings.verify,
                allow_redirects=False,
            )
        except requests.RequestException as error:
            logger.warning("delivery %s failed on attempt %d: %s", delivery.label, attempts, error)
            return result(None, None, f"{type(error).__name__}: {error}")

        status = response.status_code
        json_status, reason = _json_status_and_reason(response)
        if status not in RETRY_STATUSES:
            return result(status, json_status, reason=reason)
        if attempts > settings.max_retries:
            logger.warning(
                "delivery %s got %d after %d retries, giving up", delivery.label, status, settings.max_retries
            )
            return result(status, json_status, f"still {status} after {settings.max_retries} retries", reason)

        header = response.headers.get("Retry-After")
        delay = parse_retry_after(header)
        if delay is None:
            delay = settings.retry_backoff * 2 ** (attempts - 1)
        if delay > settings.max_retry_after:
            logger.warning(
                "delivery %s got %d with Retry-After %r, above the maximum of %.1f s, not retrying",
                delivery.label,
                status,
                header,
                settings.max_retry_after,
            )
            return result(
                status,
                json_status,
                f"Retry-After {header!r} exceeds max_retry_after={settings.max_retry_after}",
                reason,
            )

        logger.info(
            "delivery %s got %d, retrying in %.3f s (attempt %d)", delivery.label, status, delay, attempts + 1
        )
        response.close()
        settings.sleep(delay)


def parse_retry_after(value: str | None) -> float | None:
    """Parse a ``Retry-After`` value in seconds or as an HTTP date into seconds to wait.

    Returns None for a missing or invalid value. A date in the past gives 0.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _json_status_and_reason(response: requests.Response) -> tuple[str | None, str | None]:
    """Return the ``status`` and ``reason`` strings of a JSON object body, each None when absent."""
    try:
        payload = response.json()
    except ValueError:
        return None, None
    if not isinstance(payload, dict):
        return None, None
    status = payload.get("status")
    reason = payload.get("reason")
    return (
        status if isinstance(status, str) else None,
        reason if isinstance(reason, str) else None,
    )
