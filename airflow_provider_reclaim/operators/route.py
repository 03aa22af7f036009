"""Operator that routes pending Reclaim events, exactly once each, to the tasks for their kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_reclaim.hooks.webhook import ReclaimWebhookHook
from airflow_provider_reclaim.store.ledger import DEFAULT_MAX_EVENTS_PER_BATCH
from airflow_provider_reclaim.wire.events import EventKind

try:
    from airflow.sdk import BaseOperator
except ImportError:  # Airflow 3.0 kept the base operator in core.
    from airflow.models import BaseOperator  # type: ignore[no-redef]

if TYPE_CHECKING:
    from airflow.sdk import Context

ROUTED_KINDS = (EventKind.CREATED, EventKind.RESCHEDULED, EventKind.CANCELLED)


class ReclaimRouteEventsOperator(BaseOperator):
    """
    Claim the pending events of a Reclaim inbox and hand each one to the task for its kind.

    The inbox, not the run's ``triggering_asset_events``, defines what a run processes: Airflow
    may coalesce several asset events into one run, in any order, and leave others without a
    run. This operator claims every pending event of the connection, applies them to the
    per-meeting ledger in ``event_ts`` order, and pushes the records of the live changes as
    three XCom lists, under the keys ``created``, ``rescheduled`` and ``cancelled``. Expand a
    handler task over each list to get one mapped task instance per event. An empty list
    skips its handler.

    An event the ledger has already seen is dropped, an event older than the meeting's
    applied state is recorded as superseded, and nothing revives a cancelled meeting. The
    return value (XCom ``return_value``) summarises the claimed events by outcome.

    A retry of the same task instance returns the events that the run already claimed, so a
    failure after the claim loses nothing.

    :param reclaim_conn_id: The ``reclaim_webhook`` connection whose inbox to route.
    :param max_events: Maximum number of events one run claims. The rest stay pending, and
        the trigger signals them again.
    """

    template_fields: Sequence[str] = ("reclaim_conn_id",)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        reclaim_conn_id: str = ReclaimWebhookHook.default_conn_name,
        max_events: int = DEFAULT_MAX_EVENTS_PER_BATCH,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.reclaim_conn_id = reclaim_conn_id
        self.max_events = max_events

    def execute(self, context: Context) -> dict[str, Any]:
        routed_by = f"{context['dag'].dag_id}/{context['run_id']}"
        asset_event_count = sum(len(events) for events in (context.get("triggering_asset_events") or {}).values())

        ledger = ReclaimWebhookHook(reclaim_conn_id=self.reclaim_conn_id).get_ledger()
        batch = ledger.route_pending(self.reclaim_conn_id, routed_by, self.max_events)

        for kind in ROUTED_KINDS:
            context["ti"].xcom_push(key=kind.value, value=batch.records(kind))

        summary = batch.summary()
        counts = {state: len(keys) for state, keys in summary["by_state"].items()}
        self.log.info(
            "Claimed %d events of connection %r for %s (the run has %d asset events): %s",
            len(batch.events),
            self.reclaim_conn_id,
            routed_by,
            asset_event_count,
            ", ".join(f"{count} {state}" for state, count in counts.items()),
        )
        return summary
