"""
End-to-end tests of the provider through real Airflow processes, on the same path as ``make demo``.

One Airflow deployment serves the module: the API server over HTTPS with the provider's plugin
receiver mounted at ``/reclaim``, the scheduler, the DAG processor and the triggerer, running the
example DAG ``reclaim_bookings``. Every event is signed and posted over TLS to the plugin route,
as Reclaim would post it. Each test uses meetings of its own, so the tests do not see each
other's events.
"""

from __future__ import annotations

import json
import logging
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow_stack import AirflowStack, make_self_signed_cert
from demo import collect_handled, demo_scenario, wait_until_routed

from airflow_provider_reclaim.simulator import Category, Delivery, Outcome, plan_scenario, send
from airflow_provider_reclaim.store.inbox import Inbox, InboxState
from airflow_provider_reclaim.store.ledger import Ledger, MeetingStatus
from airflow_provider_reclaim.wire.signature import SIGNATURE_HEADER, sign

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "reclaim"
DAG_ID = "reclaim_bookings"
CONN_ID = "reclaim_default"


class Deployment:
    """The running stack, the connection's secret and inbox, and the receiver URL."""

    def __init__(self, stack: AirflowStack, secret: str, inbox_url: str, cert: Path) -> None:
        self.stack = stack
        self.secret = secret
        self.inbox = Inbox(inbox_url)
        self.ledger = Ledger(inbox_url)
        self.cert = cert
        self.url = f"{stack.base_url}/reclaim/webhooks/{CONN_ID}"

    def post(self, body: bytes) -> requests.Response:
        """POST one signed body the way Reclaim does."""
        event = json.loads(body)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self.secret),
            "x-reclaim-webhook-type": event["type"],
            "x-reclaim-api-version": event.get("api_version", ""),
        }
        return requests.post(self.url, data=body, headers=headers, verify=str(self.cert), timeout=30)

    def inbox_state(self, identity_key: str) -> InboxState:
        (event,) = [event for event in self.inbox.list_events(CONN_ID) if event.identity_key == identity_key]
        return event.state

    def wait_for_handled(self, identity_keys: set[str], timeout: float) -> Counter[str]:
        """Wait until each key has a handler result in a finished run, and return all handler counts."""
        deadline = time.monotonic() + timeout
        while True:
            handled, _ = collect_handled(self.stack)
            if identity_keys <= set(handled):
                return handled
            if time.monotonic() > deadline:
                missing = identity_keys - set(handled)
                pytest.fail(
                    f"{len(missing)} events not handled within {timeout:.0f} s: {sorted(missing)}\n"
                    f"{self.stack.format_log_tails()}"
                )
            time.sleep(0.5)

    def wait_until_settled(self, timeout: float = 90.0) -> Counter[str]:
        """Wait until nothing is pending and no run is active, as the demo does."""
        return wait_until_routed(self.stack, self.inbox, timeout)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("reclaim-e2e")
    (workdir / "tls").mkdir()
    cert, key = make_self_signed_cert(workdir / "tls")
    secret = secrets.token_urlsafe(32)
    inbox_url = f"sqlite:///{workdir / 'reclaim_inbox.db'}"
    connection = {"conn_type": "reclaim_webhook", "password": secret, "extra": {"inbox_url": inbox_url}}

    stack = AirflowStack(
        workdir / "airflow-home",
        dag_files=[ROOT / "dags" / "reclaim_bookings.py"],
        env={f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(connection)},
        ssl_cert=cert,
        ssl_key=key,
    )
    with stack:
        stack.wait_for_dag(DAG_ID)
        stack.unpause(DAG_ID)
        stack.wait_for_asset_watchers(DAG_ID)
        yield Deployment(stack, secret, inbox_url, cert)


def make_event(template: str, meeting_id: str, event_ts: str, **changes: Any) -> dict[str, Any]:
    """Return a fixture event moved to another meeting and ``event_ts``."""
    event = json.loads((FIXTURES / template).read_text(encoding="utf-8"))
    event["meeting"]["meeting_id"] = meeting_id
    event["event_ts"] = event_ts
    event.update(changes)
    return event


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, ensure_ascii=False).encode("utf-8")


def identity_key(event: dict[str, Any]) -> str:
    from airflow_provider_reclaim.wire.events import parse_event

    return parse_event(encode(event)).identity_key


def new_meeting_id(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:10]}"


def test_plugin_health_and_unsigned_request(deployment: Deployment):
    health = requests.get(
        f"{deployment.stack.base_url}/reclaim/health", verify=str(deployment.cert), timeout=30
    )
    unsigned = requests.post(deployment.url, data=b"{}", verify=str(deployment.cert), timeout=30)

    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert unsigned.status_code == 401
    assert unsigned.json()["reason"] == "missing_signature"


def test_burst_of_three_all_handled(deployment: Deployment):
    events = [
        make_event(
            "created-observed.json", new_meeting_id(f"burst{index}"), f"2031-01-0{index + 1}T09:00:00.000Z"
        )
        for index in range(3)
    ]
    deliveries = [
        Delivery(
            label=f"burst {index}",
            category=Category.BURST,
            body=encode(event),
            headers={"Content-Type": "application/json", "x-reclaim-webhook-type": event["type"]},
            expected=Outcome.ACCEPTED,
            burst=1,
        )
        for index, event in enumerate(events)
    ]
    keys = {identity_key(event) for event in events}

    sent_at = time.monotonic()
    results = send(deployment.url, deliveries, deployment.secret, verify=str(deployment.cert))
    starts = [result.started_ms for result in results]

    # The simulator releases the three requests together. Their spread is logged, not asserted,
    # because it measures the test machine's scheduling, not the provider.
    log.info("Burst requests started within %.1f ms of each other", max(starts) - min(starts))
    assert [result.json_status for result in results] == ["accepted"] * 3
    handled = deployment.wait_for_handled(keys, timeout=60)
    log.info("Burst of 3 handled %.1f s after sending", time.monotonic() - sent_at)
    assert all(handled[key] == 1 for key in keys), {key: handled[key] for key in keys}


def test_same_event_three_times_routed_once(deployment: Deployment):
    meeting_id = new_meeting_id("dup")
    event = make_event("created-documented.json", meeting_id, "2031-02-01T10:00:00Z")
    key = identity_key(event)

    answers = []
    for sent_at in ("2031-02-01T10:00:01Z", "2031-02-01T10:05:00Z", "2031-02-01T11:00:00Z"):
        event["webhook_sent_at"] = sent_at
        event["request_id"] = str(uuid.uuid4())
        answers.append(deployment.post(encode(event)).json()["status"])

    assert answers == ["accepted", "duplicate", "duplicate"]
    deployment.wait_for_handled({key}, timeout=60)
    handled = deployment.wait_until_settled()
    assert handled[key] == 1
    (stored,) = deployment.inbox.list_events(CONN_ID, meeting_id=meeting_id)
    assert stored.delivery_count == 3
    assert stored.state is InboxState.ROUTED


def test_late_created_never_revives_cancelled(deployment: Deployment):
    meeting_id = new_meeting_id("cancel")
    cancelled = make_event("cancelled-observed.json", meeting_id, "2031-03-02T12:00:00.000Z")
    created = make_event("created-observed.json", meeting_id, "2031-03-01T12:00:00.000Z")

    assert deployment.post(encode(cancelled)).json()["status"] == "accepted"
    deployment.wait_for_handled({identity_key(cancelled)}, timeout=60)
    assert deployment.post(encode(created)).json()["status"] == "accepted"
    handled = deployment.wait_until_settled()

    (meeting,) = deployment.ledger.meetings(CONN_ID, meeting_id=meeting_id)
    assert meeting.status is MeetingStatus.CANCELLED
    assert deployment.inbox_state(identity_key(created)) is InboxState.SUPERSEDED
    assert handled[identity_key(created)] == 0
    assert handled[identity_key(cancelled)] == 1


def test_events_survive_triggerer_restart(deployment: Deployment):
    meeting_id = new_meeting_id("restart")
    event = make_event("created-documented.json", meeting_id, "2031-04-01T08:00:00Z")

    deployment.stack.stop_component("triggerer")
    try:
        assert deployment.post(encode(event)).json()["status"] == "accepted"
        assert deployment.inbox_state(identity_key(event)) is InboxState.PENDING
    finally:
        deployment.stack.start_component("triggerer")

    handled = deployment.wait_for_handled({identity_key(event)}, timeout=90)
    assert handled[identity_key(event)] == 1


def test_demo_scenario_handled_exactly_once(deployment: Deployment):
    results = send(
        deployment.url, plan_scenario(demo_scenario(seed=11)), deployment.secret, verify=str(deployment.cert)
    )
    handled = deployment.wait_until_settled(timeout=150)

    unexpected = [
        (result.label, result.http_status, result.json_status)
        for result in results
        if not result.matches_expected
    ]
    routed = [
        event.identity_key for event in deployment.inbox.list_events(CONN_ID, states={InboxState.ROUTED})
    ]
    assert unexpected == []
    assert not any(result.http_status and result.http_status >= 500 for result in results)
    assert [key for key in routed if handled[key] != 1] == []
    assert deployment.inbox.list_events(CONN_ID, states={InboxState.PENDING}) == []


def test_providers_list_shows_provider(deployment: Deployment):
    completed = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        env=deployment.stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    providers = {entry["package_name"]: entry for entry in json.loads(completed.stdout)}

    assert "airflow-provider-reclaim" in providers
    assert providers["airflow-provider-reclaim"]["version"] == "0.1.0"


def _form_fields_unavailable() -> bool:
    """Airflow 3.1 builds connection forms from wtforms fields, and wtforms comes with the FAB provider."""
    import importlib.util

    from airflow import __version__ as airflow_version
    from packaging.version import Version

    return Version(airflow_version) < Version("3.2") and importlib.util.find_spec("wtforms") is None


@pytest.mark.skipif(
    _form_fields_unavailable(), reason="Airflow 3.1 without wtforms shows no connection form fields"
)
def test_connection_form_has_labelled_fields(deployment: Deployment):
    hooks = {hook["connection_type"]: hook for hook in deployment.stack.api_get("/ui/connections/hook_meta")}
    form = hooks["reclaim_webhook"]
    labels = {name: field["schema"].get("title") for name, field in form["extra_fields"].items()}

    assert form["hook_name"] == "Reclaim Webhook"
    assert labels["previous_secrets"] == "Previous secrets (rotation)"
    assert labels["inbox_url"] == "Inbox database URL"
    assert labels["max_body_bytes"] == "Maximum body size (bytes)"
    assert form["standard_fields"]["password"]["title"] == "Webhook secret"
    assert form["standard_fields"]["host"]["hidden"] is True
