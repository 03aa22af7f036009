"""Event trigger that turns pending inbox events into asset events, for ``AssetWatcher``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Hashable
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_reclaim.hooks.webhook import ReclaimWebhookHook, settings_from_connection
from airflow_provider_reclaim.store.database import StoreUnavailable
from airflow_provider_reclaim.store.inbox import Inbox, InboxEvent

log = logging.getLogger(__name__)

SIGNAL_NEW = "new"
SIGNAL_RETRY = "retry"

# Fields of the event record copied into asset-event payloads: no personal data.
_SIGNALLED_FIELDS = (
    "identity_key",
    "kind",
    "type",
    "meeting_id",
    "event_ts",
    "start_time",
    "end_time",
    "custom_data",
)


class _InboxPoller:
    """Poll one connection's inbox and decide which pending events to signal.

    The poller keeps, in memory, when it last signalled each pending event. After a triggerer
    restart that memory is empty, so every pending event is signalled again. That is safe:
    routing claims events from the inbox, so a repeated signal never routes an event twice.
    """

    def __init__(
        self, conn_id: str, inbox_url: str | None, resignal_interval: float, max_signals_per_poll: int
    ):
        self.conn_id = conn_id
        self.inbox_url = inbox_url
        self.resignal_interval = resignal_interval
        self.max_signals_per_poll = max_signals_per_poll
        self._last_signalled: dict[int, float] = {}
        self._inbox: Inbox | None = None

    def poll(self) -> list[dict[str, Any]]:
        """Read the pending events and return the signals to emit now. Blocks: run it in a thread."""
        if self._inbox is None:
            self._inbox = Inbox(self.inbox_url)
        pending_ids = self._inbox.pending_ids(self.conn_id)
        now = time.monotonic()

        pending = set(pending_ids)
        for event_id in list(self._last_signalled):
            if event_id not in pending:
                del self._last_signalled[event_id]

        # Airflow may coalesce a burst of asset events into one DAG run and leave the rest
        # unprocessed until an unrelated event arrives. While events stay pending, one more
        # signal per interval provides that later event. One signal is enough, because the
        # routing task claims every pending event, not only those of its asset events.
        new_ids = [event_id for event_id in pending_ids if event_id not in self._last_signalled]
        new_ids = new_ids[: self.max_signals_per_poll]
        stale_ids = [
            event_id
            for event_id in pending_ids
            if now - self._last_signalled.get(event_id, now) >= self.resignal_interval
        ]

        # Only the events to signal are read in full. An event routed since pending_ids() is skipped.
        events = {event.id: event for event in self._inbox.get_events(self.conn_id, new_ids + stale_ids[:1])}
        signals = []
        for event_id in new_ids:
            self._last_signalled[event_id] = now
            if event_id in events:
                signals.append(self._signal(events[event_id], SIGNAL_NEW, len(pending_ids)))
        if stale_ids:
            for event_id in stale_ids:
                self._last_signalled[event_id] = now
            if stale_ids[0] in events:
                signals.append(self._signal(events[stale_ids[0]], SIGNAL_RETRY, len(pending_ids)))
        return signals

    def _signal(self, event: InboxEvent, signal: str, pending_count: int) -> dict[str, Any]:
        # The triggerer logs every payload, and asset events are shown in the UI, so the
        # signal leaves out the booker and the host. Tasks read the full record from the inbox.
        summary = {field: event.record.get(field) for field in _SIGNALLED_FIELDS}
        return {
            "conn_id": self.conn_id,
            "signal": signal,
            "inbox_id": event.id,
            "pending_count": pending_count,
            "event": summary,
        }


async def _resolve_inbox_url(conn_id: str) -> str | None:
    """Look up the connection on the event loop, where the triggerer expects lookups to run."""
    connection = await ReclaimWebhookHook.aget_connection(conn_id)
    extra = connection.extra_dejson if connection.extra else {}
    return settings_from_connection(conn_id, connection.password, extra).inbox_url


class ReclaimInboxTrigger(BaseEventTrigger):
    """
    Fire an asset event for each verified Reclaim event that is waiting in the inbox.

    Use it in an ``AssetWatcher``. The trigger reads the inbox of a ``reclaim_webhook``
    connection and yields one :class:`~airflow.triggers.base.TriggerEvent` per new pending
    event. The payload names the event (identity key, kind, meeting id, times, custom data)
    and leaves out the booker's and the host's personal data. While events stay pending, it signals
    again every ``resignal_interval`` seconds, so that no verified event waits for an unrelated
    later delivery. Triggers on the same connection and cadence share one poll loop on Airflow
    3.3 and newer.

    The trigger only reads. Routing, in
    :class:`~airflow_provider_reclaim.operators.route.ReclaimRouteEventsOperator`, decides what
    each event does, so a repeated signal is harmless.

    :param reclaim_conn_id: The ``reclaim_webhook`` connection whose inbox to watch.
    :param poll_interval: Seconds between two reads of the inbox.
    :param resignal_interval: Seconds after which a still-pending event is signalled again.
    :param max_signals_per_poll: Maximum number of new-event signals yielded per poll. The rest
        follow on the next polls.
    """

    def __init__(
        self,
        *,
        reclaim_conn_id: str = "reclaim_default",
        poll_interval: float = 1.0,
        resignal_interval: float = 15.0,
        max_signals_per_poll: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        if resignal_interval < poll_interval:
            raise ValueError(
                f"resignal_interval ({resignal_interval}) must be at least poll_interval ({poll_interval})"
            )
        self.reclaim_conn_id = reclaim_conn_id
        self.poll_interval = poll_interval
        self.resignal_interval = resignal_interval
        self.max_signals_per_poll = max_signals_per_poll

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Serialize the trigger's arguments and classpath. Only the connection id, never a secret."""
        return (
            "airflow_provider_reclaim.triggers.inbox.ReclaimInboxTrigger",
            {
                "reclaim_conn_id": self.reclaim_conn_id,
                "poll_interval": self.poll_interval,
                "resignal_interval": self.resignal_interval,
                "max_signals_per_poll": self.max_signals_per_poll,
            },
        )

    def shared_stream_key(self) -> Hashable | None:
        """Share one poll among triggers that watch the same connection at the same cadence."""
        return (
            "airflow-provider-reclaim.inbox",
            self.reclaim_conn_id,
            self.poll_interval,
            self.resignal_interval,
            self.max_signals_per_poll,
        )

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """Poll the inbox forever and yield one signal dictionary per event to announce."""
        conn_id = kwargs["reclaim_conn_id"]
        poller = _InboxPoller(
            conn_id,
            await _resolve_inbox_url(conn_id),
            kwargs["resignal_interval"],
            kwargs["max_signals_per_poll"],
        )
        poll_interval = kwargs["poll_interval"]
        log.info("Watching the inbox of connection %r every %s s", conn_id, poll_interval)
        failures = 0

        while True:
            try:
                signals = await asyncio.to_thread(poller.poll)
                failures = 0
            except StoreUnavailable as error:
                failures += 1
                # Log the first failure and then every 60th, so a long outage does not flood the log.
                if failures == 1 or failures % 60 == 0:
                    log.warning(
                        "Cannot read the inbox of %r (failure %d), retrying in %s s: %s",
                        kwargs["reclaim_conn_id"],
                        failures,
                        poll_interval,
                        error,
                    )
                signals = []

            for signal in signals:
                log.info(
                    "Signalling event %s (%s, %s signal, %d pending) of connection %r",
                    signal["event"]["identity_key"],
                    signal["event"]["kind"],
                    signal["signal"],
                    signal["pending_count"],
                    signal["conn_id"],
                )
                yield signal
            await asyncio.sleep(poll_interval)

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Turn each signal of the shared poll into a trigger event."""
        async for signal in shared_stream:
            yield TriggerEvent(signal)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll the inbox on this trigger's own loop, for Airflow versions without shared streams."""
        _, kwargs = self.serialize()
        async for event in self.filter_shared_stream(self.open_shared_stream(kwargs)):
            yield event
