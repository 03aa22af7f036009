"""Run the whole provider once: Reclaim's simulator -> HTTPS receiver -> inbox -> DAG tasks.

``make demo`` runs this script. It starts a throwaway Airflow deployment under ``.demo/``:
SQLite, LocalExecutor, the API server over HTTPS with a self-signed certificate, the
scheduler, the DAG processor and the triggerer. It unpauses the example DAG and sends a
realistic stream of signed events to the receiver that the provider's plugin mounts on the
API server, and waits until every verified event has been routed and handled. Then it sends a
reschedule dated before a cancellation that was already routed, which must be superseded.
Last, it prints a summary and stops every process it started, also on failure or Ctrl-C.

Exit status: 0 when every verified event was handled exactly once and every delivery got the
response a correct receiver gives; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import shutil
import signal
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowStack, AirflowStackError, make_self_signed_cert  # noqa: E402

from airflow_provider_reclaim.simulator import (  # noqa: E402
    EVENT_CANCELLED,
    EVENT_UPDATED,
    Category,
    Delivery,
    Outcome,
    PlanOptions,
    Scenario,
    plan_scenario,
    send,
)
from airflow_provider_reclaim.store.inbox import Inbox, InboxState  # noqa: E402
from airflow_provider_reclaim.store.ledger import Ledger  # noqa: E402
from airflow_provider_reclaim.wire.events import parse_event  # noqa: E402

log = logging.getLogger("reclaim-demo")

DAG_ID = "reclaim_bookings"
ASSET_NAME = "reclaim_bookings"
CONN_ID = "reclaim_default"


def demo_scenario(seed: int) -> Scenario:
    """Return the embedded demo stream: several links and campaigns, and every delivery hazard."""
    return Scenario(
        seed=seed,
        meetings=10,
        links=3,
        update_share=0.5,
        cancel_share=0.3,
        plan=PlanOptions(duplicates=3, out_of_order=2, burst=3, tampered=True, not_json=True),
    )


def late_reschedule(deliveries: list[Delivery]) -> Delivery:
    """Build a reschedule that Reclaim dated before a cancellation but delivers after it.

    The ledger must record it as superseded: a cancellation is final.
    """
    cancelled = next(
        delivery for delivery in deliveries if delivery.key and delivery.key.type == EVENT_CANCELLED
    )
    event = json.loads(cancelled.body)
    event["type"] = EVENT_UPDATED
    event.pop("cancellation_message", None)
    cancelled_at = datetime.fromisoformat(event["event_ts"].replace("Z", "+00:00"))
    event["event_ts"] = (
        (cancelled_at - timedelta(minutes=5)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    return Delivery(
        label=f"late Updated {event['meeting']['meeting_id']}",
        category=Category.OUT_OF_ORDER,
        body=json.dumps(event).encode("utf-8"),
        headers={"Content-Type": "application/json", "x-reclaim-webhook-type": EVENT_UPDATED},
        expected=Outcome.ACCEPTED,
    )


def collect_handled(stack: AirflowStack) -> tuple[Counter[str], list[dict[str, Any]]]:
    """Count, per identity key, how many handler results the DAG's finished runs recorded."""
    handled: Counter[str] = Counter()
    runs = stack.dag_runs(DAG_ID)
    for run in runs:
        if run["state"] != "success":
            continue
        outcome = stack.xcom(DAG_ID, run["dag_run_id"], "record_outcome")
        for item in outcome["handled"]:
            handled[item["identity_key"]] += 1
    return handled, runs


def wait_until_routed(stack: AirflowStack, inbox: Inbox, timeout: float) -> Counter[str]:
    """Wait until no event is pending, every routed event was handled, and no run is active."""
    deadline = time.monotonic() + timeout
    while True:
        events = inbox.list_events(CONN_ID)
        pending = [event for event in events if event.state is InboxState.PENDING]
        routed = {event.identity_key for event in events if event.state is InboxState.ROUTED}
        handled, runs = collect_handled(stack)
        active = [run for run in runs if run["state"] in ("queued", "running")]
        failed = [run for run in runs if run["state"] == "failed"]
        if failed:
            raise AirflowStackError(f"DAG run {failed[0]['dag_run_id']} failed:\n{stack.format_log_tails()}")
        if not pending and not active and routed and routed <= set(handled):
            log.info("All routed events handled, in %d DAG runs", len(runs))
            return handled
        if time.monotonic() > deadline:
            raise AirflowStackError(
                f"Timed out after {timeout:.0f} s: {len(pending)} events pending, "
                f"{len(routed - set(handled))} routed but not handled, {len(active)} runs active.\n"
                f"{stack.format_log_tails()}"
            )
        time.sleep(1.0)


def print_summary(results, inbox: Inbox, ledger: Ledger, handled: Counter[str], late_key: str) -> bool:
    """Print each delivery's outcome and each meeting's final state. Return whether all checks passed."""
    width = max(len(result.label) for result in results)
    print("\nDeliveries (simulator -> receiver):")
    print(f"  {'delivery':<{width}}  {'expected':<12} {'HTTP':>4}  {'response':<12} ok")
    for result in results:
        ok = "yes" if result.matches_expected else "NO"
        response = (result.json_status or result.error or "-")[:12]
        print(
            f"  {result.label:<{width}}  {result.expected.value:<12} {result.http_status or '-':>4}  {response:<12} {ok}"
        )

    events = inbox.list_events(CONN_ID)
    states = Counter(event.state.value for event in events)
    print(
        "\nStored events by state:", ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    )
    print(f"Quarantined deliveries: {len(inbox.list_quarantine(CONN_ID))}")

    print("\nMeetings (ledger):")
    print(f"  {'meeting id':<38} {'status':<12} {'last event':<12} {'start (UTC)':<26} attribution")
    for meeting in ledger.meetings(CONN_ID):
        data = (meeting.custom_data or {}).get("data") or {}
        attribution = " ".join(f"{key}={value}" for key, value in data.items()) or "-"
        start = meeting.start_time.strftime("%Y-%m-%d %H:%M") if meeting.start_time else "-"
        print(
            f"  {meeting.meeting_id:<38} {meeting.status.value:<12} {meeting.last_kind.value:<12} {start:<26} {attribution}"
        )

    routed = [event.identity_key for event in events if event.state is InboxState.ROUTED]
    handled_twice = [key for key, count in handled.items() if count > 1]
    not_handled = [key for key in routed if handled[key] == 0]
    unexpected = [result for result in results if not result.matches_expected]
    late_state = next(event.state for event in events if event.identity_key == late_key)
    late_ok = late_state is InboxState.SUPERSEDED and handled[late_key] == 0
    print(f"Late reschedule after the cancellation: {late_state.value}, handled {handled[late_key]} times")
    print(
        f"\nRouted {len(routed)} events; handled exactly once: {len(routed) - len(not_handled) - len(handled_twice)}; "
        f"handled twice: {len(handled_twice)}; not handled: {len(not_handled)}; "
        f"unexpected responses: {len(unexpected)}"
    )
    return not handled_twice and not not_handled and not unexpected and late_ok


def _raise_keyboard_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, default=ROOT / ".demo", help="Directory for the throwaway deployment."
    )
    parser.add_argument("--seed", type=int, default=7, help="Seed of the simulated event stream.")
    parser.add_argument("--timeout", type=float, default=150.0, help="Seconds to wait for routing to finish.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)

    started = time.monotonic()
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    (args.workdir / "tls").mkdir()
    cert, key = make_self_signed_cert(args.workdir / "tls")
    secret = secrets.token_urlsafe(32)
    inbox_url = f"sqlite:///{args.workdir / 'reclaim_inbox.db'}"
    connection = {"conn_type": "reclaim_webhook", "password": secret, "extra": {"inbox_url": inbox_url}}

    stack = AirflowStack(
        args.workdir / "airflow-home",
        dag_files=[ROOT / "dags" / "reclaim_bookings.py"],
        env={f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(connection)},
        ssl_cert=cert,
        ssl_key=key,
    )
    try:
        log.info(
            "Starting Airflow (API server over HTTPS, scheduler, DAG processor, triggerer) in %s",
            args.workdir,
        )
        stack.start()
        stack.wait_for_dag(DAG_ID)
        stack.unpause(DAG_ID)
        stack.wait_for_asset_watchers(ASSET_NAME)

        url = f"{stack.base_url}/reclaim/webhooks/{CONN_ID}"
        deliveries = plan_scenario(demo_scenario(args.seed))
        log.info("Sending %d deliveries to %s", len(deliveries), url)
        results = send(url, deliveries, secret, verify=str(cert))

        inbox, ledger = Inbox(inbox_url), Ledger(inbox_url)
        log.info("Waiting until every verified event is routed and handled (at most %.0f s)", args.timeout)
        wait_until_routed(stack, inbox, args.timeout)

        late = late_reschedule(deliveries)
        log.info("Sending a reschedule dated before its meeting's cancellation, after that was routed")
        results += send(url, [late], secret, verify=str(cert))
        handled = wait_until_routed(stack, inbox, args.timeout)
        passed = print_summary(results, inbox, ledger, handled, parse_event(late.body).identity_key)
    except AirflowStackError as error:
        print(f"Demo failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("Demo interrupted, stopping Airflow", file=sys.stderr)
        return 130
    finally:
        stack.stop()

    outcome = "all checks passed" if passed else "CHECKS FAILED"
    print(f"\nDemo finished in {time.monotonic() - started:.0f} s, Airflow stopped: {outcome}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
