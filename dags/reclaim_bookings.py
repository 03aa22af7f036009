"""Route Reclaim Scheduling Link bookings, reschedules and cancellations into tasks.

The ``reclaim_bookings`` asset is watched by ``ReclaimInboxTrigger``: each verified event that
the receiver stored wakes this DAG. The ``route`` task claims every pending event from the
inbox, one ``*_events`` task per kind returns the live changes of that kind, and each of them
runs one mapped instance of the handler for its kind. A kind with no events is skipped. Replace the
handler bodies with your own work (a CRM update, a chat message, a row in an attribution
table). ``record_outcome`` collects what the handlers did.

Set ``RECLAIM_CONN_ID`` to use a connection other than ``reclaim_default``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_reclaim.operators.route import ReclaimRoutedEventsOperator, ReclaimRouteEventsOperator
from airflow_provider_reclaim.triggers.inbox import ReclaimInboxTrigger

log = logging.getLogger(__name__)

RECLAIM_CONN_ID = os.environ.get("RECLAIM_CONN_ID", "reclaim_default")

reclaim_bookings = Asset(
    name="reclaim_bookings",
    watchers=[
        AssetWatcher(
            name="reclaim_inbox_watcher",
            trigger=ReclaimInboxTrigger(reclaim_conn_id=RECLAIM_CONN_ID),
        )
    ],
)


def _describe(event: dict[str, Any]) -> str:
    # The booker's email stays out of the log on purpose.
    data = (event.get("custom_data") or {}).get("data") or {}
    return (
        f"meeting {event['meeting_id']} on link {event['scheduling_link']['title']!r}, "
        f"starts {event['start_time']}, attribution {data}"
    )


def _handled(event: dict[str, Any]) -> dict[str, str]:
    """Return what record_outcome collects about a handled event."""
    return {"identity_key": event["identity_key"], "kind": event["kind"], "meeting_id": event["meeting_id"]}


with DAG(
    dag_id="reclaim_bookings",
    schedule=[reclaim_bookings],
    catchup=False,
    max_active_runs=1,
    tags=["reclaim"],
    doc_md=__doc__,
):
    route = ReclaimRouteEventsOperator(task_id="route", reclaim_conn_id=RECLAIM_CONN_ID)

    @task
    def handle_created(event: dict[str, Any]) -> dict[str, str]:
        log.info("New booking: %s", _describe(event))
        return _handled(event)

    @task
    def handle_rescheduled(event: dict[str, Any]) -> dict[str, str]:
        log.info("Rescheduled: %s", _describe(event))
        return _handled(event)

    @task
    def handle_cancelled(event: dict[str, Any]) -> dict[str, str]:
        log.info("Cancelled: %s, reason given: %s", _describe(event), bool(event.get("cancellation_message")))
        return _handled(event)

    @task(trigger_rule="none_failed")
    def record_outcome(
        created: list[dict[str, str]] | None,
        rescheduled: list[dict[str, str]] | None,
        cancelled: list[dict[str, str]] | None,
        summary: dict[str, Any],
    ) -> dict[str, Any]:
        handled = [*(created or []), *(rescheduled or []), *(cancelled or [])]
        not_routed = {state: len(keys) for state, keys in summary["by_state"].items() if state != "routed"}
        log.info("Handled %d events in this run; not routed: %s", len(handled), not_routed)
        return {"handled": handled, "by_state": summary["by_state"]}

    handlers = {"created": handle_created, "rescheduled": handle_rescheduled, "cancelled": handle_cancelled}
    handled = {}
    for kind, handler in handlers.items():
        events = ReclaimRoutedEventsOperator(
            task_id=f"{kind}_events", kind=kind, reclaim_conn_id=RECLAIM_CONN_ID
        )
        route >> events
        handled[kind] = handler.expand(event=events.output)

    record_outcome(handled["created"], handled["rescheduled"], handled["cancelled"], route.output)
