"""
Smoke tests for the ``AirflowStack`` harness against real Airflow processes.

``test_asset_watcher_runs_dag`` drives the Airflow 3 event-driven scheduling path that the provider relies
on: a ``FileDeleteTrigger`` watcher in the triggerer emits an asset event, and the scheduler creates a DAG
run for it. ``test_plugin_route_needs_no_token`` checks that a FastAPI app from a plugin is served by the API
server without authentication, which a webhook receiver needs.
"""

from __future__ import annotations

import logging
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from airflow_stack import AirflowStack, make_self_signed_cert

log = logging.getLogger(__name__)

pytestmark = pytest.mark.e2e

DAG_ID = "e2e_flag_file"
ASSET_NAME = "e2e_flag_file_asset"

# Rendered with str.format, so literal braces in the DAG source are doubled.
FLAG_FILE_DAG = textwrap.dedent(
    """
    from airflow.providers.standard.triggers.file import FileDeleteTrigger
    from airflow.sdk import DAG, Asset, AssetWatcher, task

    # poke_interval defaults to 5 s, and 1 s keeps the test fast.
    flag_asset = Asset(
        name="{asset_name}",
        watchers=[
            AssetWatcher(
                name="e2e_flag_watcher",
                trigger=FileDeleteTrigger(filepath="{flag_path}", poke_interval=1.0),
            )
        ],
    )

    with DAG(dag_id="{dag_id}", schedule=[flag_asset], catchup=False, tags=["e2e"]):

        @task
        def count_events(**context):
            events = context["triggering_asset_events"][flag_asset]
            return {{"asset": flag_asset.name, "events": len(events)}}

        @task
        def square(number):
            return number * number

        count_events()
        square.expand(number=[1, 2, 3])
    """
)

PROBE_PLUGIN = textwrap.dedent(
    """
    from fastapi import FastAPI

    from airflow.plugins_manager import AirflowPlugin

    probe_app = FastAPI()


    @probe_app.post("/echo")
    async def echo(payload: dict):
        return {"received": payload, "route": "probe-echo"}


    class ProbePlugin(AirflowPlugin):
        name = "e2e_probe"
        fastapi_apps = [{"app": probe_app, "url_prefix": "/probe", "name": "E2E probe"}]
    """
)


@pytest.fixture(scope="module")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory):
    """Start all four components over HTTPS, shared by the tests of this module."""
    cert_dir = tmp_path_factory.mktemp("tls")
    cert, key = make_self_signed_cert(cert_dir)
    with AirflowStack(tmp_path_factory.mktemp("airflow"), ssl_cert=cert, ssl_key=key) as stack:
        log.info("Stack started and healthy in %.1f s", stack.startup_seconds)
        yield stack


@pytest.fixture
def api_server_stack(tmp_path: Path):
    """
    Start only the API server, with the probe plugin installed and authentication on.

    With ``all_admins`` on, the API server adds an admin token to every request, so a test could not tell
    whether a route needs one.
    """
    stack = AirflowStack(tmp_path / "airflow", components=("api-server",), all_admins=False)
    stack.write_plugin("e2e_probe.py", PROBE_PLUGIN)
    with stack:
        yield stack


def test_plugin_route_needs_no_token(api_server_stack: AirflowStack):
    with httpx.Client(base_url=api_server_stack.base_url, trust_env=False, timeout=30) as anonymous:
        response = anonymous.post("/probe/echo", json={"hello": "reclaim"})
        assert response.status_code == 200, response.text
        assert response.json() == {"received": {"hello": "reclaim"}, "route": "probe-echo"}

        public_api = anonymous.get("/api/v2/dags")
        assert public_api.status_code == 401, public_api.text

    assert api_server_stack.api_get("/api/v2/dags")["total_entries"] == 0


def _seconds_since(start: datetime, timestamp: str) -> float:
    return (datetime.fromisoformat(timestamp) - start).total_seconds()


def test_asset_watcher_runs_dag(airflow_stack: AirflowStack, tmp_path: Path):
    flag_path = tmp_path / "flag"
    source = FLAG_FILE_DAG.format(asset_name=ASSET_NAME, flag_path=flag_path, dag_id=DAG_ID)

    written_at = time.monotonic()
    airflow_stack.write_dag("e2e_flag_file.py", source)
    dag = airflow_stack.wait_for_dag(DAG_ID)
    log.info("DAG parsed and served %.1f s after its file was written", time.monotonic() - written_at)
    assert dag["is_paused"] is True

    unpaused_at = time.monotonic()
    airflow_stack.unpause(DAG_ID)
    asset = airflow_stack.wait_for_asset_watchers(ASSET_NAME)
    log.info("Watcher registered %.1f s after unpausing", time.monotonic() - unpaused_at)
    # Airflow 3.1's REST API does not list watchers; wait_for_asset_watchers() then counted them in the database.
    if "watchers" in asset:
        assert [watcher["name"] for watcher in asset["watchers"]] == ["e2e_flag_watcher"]
    assert airflow_stack.dag_runs(DAG_ID) == []

    flag_created_at = datetime.now(timezone.utc)
    flag_path.touch()
    run = airflow_stack.wait_for_dag_run(DAG_ID, state="success", timeout=90)
    elapsed = (datetime.now(timezone.utc) - flag_created_at).total_seconds()
    log.info(
        "Flag file to DAG run success: %.1f s observed (run queued at +%.1f s, started at +%.1f s, "
        "ended at +%.1f s)",
        elapsed,
        _seconds_since(flag_created_at, run["queued_at"]),
        _seconds_since(flag_created_at, run["start_date"]),
        _seconds_since(flag_created_at, run["end_date"]),
    )
    assert run["run_type"] == "asset_triggered"
    assert not flag_path.exists(), "FileDeleteTrigger deletes the flag file before it fires"

    run_id = run["dag_run_id"]
    instances = airflow_stack.task_instances(DAG_ID, run_id)
    assert [(ti["task_id"], ti["map_index"], ti["state"]) for ti in instances] == [
        ("count_events", -1, "success"),
        ("square", 0, "success"),
        ("square", 1, "success"),
        ("square", 2, "success"),
    ]

    assert airflow_stack.xcom(DAG_ID, run_id, "count_events") == {"asset": ASSET_NAME, "events": 1}
    square_log = airflow_stack.task_log(DAG_ID, run_id, "square", map_index=2)
    assert any("Done. Returned value was: 9" in line for line in square_log), square_log
    squares = [airflow_stack.xcom(DAG_ID, run_id, "square", map_index=index) for index in range(3)]
    assert squares == [1, 4, 9]

    assert len(airflow_stack.dag_runs(DAG_ID)) == 1
