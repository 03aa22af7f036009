"""Operator that routes pending Reclaim events, exactly once each, to the tasks for their kind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_reclaim.hooks.webhook import ReclaimWebhookHook
from airflow_provider_reclaim.store.ledger import DEFAULT_MAX_EVENTS_PER_BATCH, claim_key
from airflow_provider_reclaim.wire.events import EventKind

try:
    from airflow.sdk import BaseOperator
    from airflow.sdk.exceptions import AirflowSkipException
except ImportError:  # Airflow 3.0 kept these in core.
    from airflow.exceptions import AirflowSkipException  # type: ignore[no-redef]
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
    per-meeting ledger in ``event_ts`` order, and marks each one routed, superseded or
    duplicate. Downstream, one :class:`ReclaimRoutedEventsOperator` per kind returns the
    routed events of that kind, and a handler task expanded over its output gets one mapped
    task instance per event.

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
        routed_by = claim_key(context["dag"].dag_id, context["run_id"])
        asset_event_count = sum(
            len(events) for events in (context.get("triggering_asset_events") or {}).values()
        )

        ledger = ReclaimWebhookHook(reclaim_conn_id=self.reclaim_conn_id).get_ledger()
        batch = ledger.route_pending(self.reclaim_conn_id, routed_by, self.max_events)

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


class ReclaimRoutedEventsOperator(BaseOperator):
    """
    Return the records of the events of one kind that this DAG run routed.

    Place it after :class:`ReclaimRouteEventsOperator` and expand a handler over its output:
    ``handle.expand(event=select.output)`` gives one mapped task instance per event. It reads
    the run's claim from the inbox, so it returns the same list however often it runs. When
    the run routed no event of this kind, the task is skipped, and so is its handler.

    :param kind: The event kind: ``created``, ``rescheduled`` or ``cancelled``.
    :param reclaim_conn_id: The ``reclaim_webhook`` connection that the routing task used.
    """

    template_fields: Sequence[str] = ("reclaim_conn_id",)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        kind: EventKind | str,
        reclaim_conn_id: str = ReclaimWebhookHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.kind = EventKind(kind)
        if self.kind not in ROUTED_KINDS:
            raise ValueError(
                f"kind must be one of {[k.value for k in ROUTED_KINDS]}, got {self.kind.value!r}"
            )
        self.reclaim_conn_id = reclaim_conn_id

    def execute(self, context: Context) -> list[dict[str, Any]]:
        routed_by = claim_key(context["dag"].dag_id, context["run_id"])
        ledger = ReclaimWebhookHook(reclaim_conn_id=self.reclaim_conn_id).get_ledger()
        records = ledger.claimed_by(self.reclaim_conn_id, routed_by).records(self.kind)

        if not records:
            self.log.info(
                "This run routed no %s events, skipping the %s handler", self.kind.value, self.kind.value
            )
            raise AirflowSkipException(f"no {self.kind.value} events in this run")
        self.log.info("This run routed %d %s events", len(records), self.kind.value)
        return records
