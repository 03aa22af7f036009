"""Reclaim simulator for tests and demos: generates events, plans deliveries and sends them.

Typical use::

    scenario = Scenario(seed=7, meetings=12)
    deliveries = plan_scenario(scenario)
    results = send("https://127.0.0.1:8443/reclaim/webhooks/reclaim_default", deliveries, secret)
"""

from airflow_provider_reclaim.simulator.events import (
    DOCUMENTED_API_VERSION,
    EVENT_CANCELLED,
    EVENT_CREATED,
    EVENT_TYPES,
    EVENT_UPDATED,
    OBSERVED_API_VERSION,
    EventKey,
    SimulatedEvent,
)
from airflow_provider_reclaim.simulator.plan import (
    Category,
    Delivery,
    Outcome,
    assign_expected_outcomes,
    build_plan,
    deliveries_from_file,
    plan_scenario,
)
from airflow_provider_reclaim.simulator.scenario import Campaign, PlanOptions, Scenario, generate_events
from airflow_provider_reclaim.simulator.sender import USER_AGENT, DeliveryResult, parse_retry_after, send

__all__ = [
    "DOCUMENTED_API_VERSION",
    "EVENT_CANCELLED",
    "EVENT_CREATED",
    "EVENT_TYPES",
    "EVENT_UPDATED",
    "OBSERVED_API_VERSION",
    "USER_AGENT",
    "Campaign",
    "Category",
    "Delivery",
    "DeliveryResult",
    "EventKey",
    "Outcome",
    "PlanOptions",
    "Scenario",
    "SimulatedEvent",
    "assign_expected_outcomes",
    "build_plan",
    "deliveries_from_file",
    "generate_events",
    "parse_retry_after",
    "plan_scenario",
    "send",
]
