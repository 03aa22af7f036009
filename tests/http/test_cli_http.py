"""``airflow-reclaim send``, ``inbox`` and ``bookings`` against a real server over HTTPS.

Each command runs as its own process with the module's ``AIRFLOW_CONN_<ID>`` variables, as a
user would run it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import requests
from receiver_harness import CONN_ID, DEMO_CONN_ID, cli_command, copy_fixture, find_free_port

from airflow_provider_reclaim.store.ledger import Ledger

SECRET_VARIABLE = "RECLAIM_TEST_WEBHOOK_SECRET"
OBSERVED_MEETING_ID = "Qx7LmN2pR4sT"


@pytest.fixture(scope="module")
def run_cli(receiver_environment):
    """Return a function that runs ``airflow-reclaim ARGS`` and returns the finished process."""

    def run(*args: str, secret_variable: bool = True, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = receiver_environment.variables()
        if secret_variable:
            env[SECRET_VARIABLE] = receiver_environment.secret
        completed = subprocess.run(
            [*cli_command(), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        for stream in (completed.stdout, completed.stderr):
            assert receiver_environment.secret not in stream
        return completed

    return run


def assert_one_line_error(completed: subprocess.CompletedProcess[str], exit_code: int, *fragments: str) -> None:
    assert completed.returncode == exit_code, completed.stderr
    assert "Traceback" not in completed.stderr
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("airflow-reclaim: error:")
    for fragment in fragments:
        assert fragment in last_line


def test_send_file_then_inbox_and_bookings(receiver, receiver_environment, run_cli, tmp_path):
    body_file = copy_fixture("created-observed.json", tmp_path)

    sent = run_cli(
        "send",
        "--url",
        receiver.webhook_url(CONN_ID),
        "--secret-env",
        SECRET_VARIABLE,
        "--cacert",
        str(receiver.certfile),
        "--file",
        str(body_file),
        "--json",
    )

    assert sent.returncode == 0, sent.stderr
    outcomes = json.loads(sent.stdout)
    assert len(outcomes) == 1
    assert outcomes[0]["http_status"] == 200
    assert outcomes[0]["status"] == "accepted"
    assert outcomes[0]["passed"] is True
    assert outcomes[0]["meeting_id"] == OBSERVED_MEETING_ID

    listed = run_cli("inbox", "list", "--conn-id", CONN_ID, "--json")

    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)
    matching = [event for event in events if event["meeting_id"] == OBSERVED_MEETING_ID]
    assert len(matching) == 1
    assert matching[0]["state"] == "pending"
    assert matching[0]["kind"] == "created"
    assert matching[0]["delivery_count"] == 1
    assert matching[0]["identity_key"].startswith("SchedulingLink.Meeting.Created/")

    table = run_cli("inbox", "list", "--conn-id", CONN_ID)

    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["id", "identity_key", "kind", "meeting_id", "state", "deliveries"]
    assert matching[0]["identity_key"] in table.stdout

    # The ledger is filled by routing, which a DAG task does in a deployment.
    Ledger(receiver_environment.inbox_url).route_pending(CONN_ID, "test_cli_http/manual")
    bookings = run_cli("bookings", "--conn-id", CONN_ID, "--json")

    assert bookings.returncode == 0, bookings.stderr
    meetings = json.loads(bookings.stdout)
    assert [meeting["meeting_id"] for meeting in meetings] == [OBSERVED_MEETING_ID]
    assert meetings[0]["status"] == "booked"
    assert meetings[0]["last_identity_key"] == matching[0]["identity_key"]


def test_send_same_file_again_is_a_mismatch(receiver, run_cli, tmp_path):
    body_file = copy_fixture("created-documented.json", tmp_path)
    command = ["send", "--url", receiver.webhook_url(CONN_ID), "--secret-env", SECRET_VARIABLE]
    command += ["--cacert", str(receiver.certfile), "--file", str(body_file)]

    first = run_cli(*command)
    second = run_cli(*command)
    expected_duplicate = run_cli(*command, "--expect", "duplicate")

    assert first.returncode == 0, first.stderr
    assert "200 accepted" in first.stdout
    assert second.returncode == 1
    assert "MISMATCH" in second.stdout
    assert "200 duplicate" in second.stdout
    assert "did not get the expected response" in second.stderr
    assert expected_duplicate.returncode == 0, expected_duplicate.stderr


def test_send_demo_scenario_with_connection_secret(receiver, run_cli):
    sent = run_cli(
        "send",
        "--url",
        receiver.webhook_url(DEMO_CONN_ID),
        "--conn-id",
        DEMO_CONN_ID,
        "--demo-scenario",
        "--cacert",
        str(receiver.certfile),
        "--json",
        secret_variable=False,
    )

    assert sent.returncode == 0, sent.stdout + sent.stderr
    outcomes = json.loads(sent.stdout)
    assert all(outcome["passed"] for outcome in outcomes)
    statuses = {outcome["http_status"] for outcome in outcomes}
    assert statuses == {200, 202, 401}
    assert {outcome["status"] for outcome in outcomes if outcome["http_status"] == 200} == {"accepted", "duplicate"}

    quarantined = run_cli("inbox", "quarantine", "--conn-id", DEMO_CONN_ID, "--json")

    assert quarantined.returncode == 0, quarantined.stderr
    entries = json.loads(quarantined.stdout)
    assert len(entries) == sum(1 for outcome in outcomes if outcome["http_status"] == 202)
    assert all(entry["body_bytes"] > 0 for entry in entries)


def test_send_without_trusted_certificate_fails(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)

    sent = run_cli("send", "--url", receiver.webhook_url(CONN_ID), "--secret-env", SECRET_VARIABLE, "--file", str(body_file), "--json")

    assert sent.returncode == 1
    outcomes = json.loads(sent.stdout)
    assert outcomes[0]["http_status"] is None
    assert "SSL" in outcomes[0]["error"]


def test_send_to_unreachable_url_fails(run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)
    closed_port = find_free_port()

    sent = run_cli(
        "send",
        "--url",
        f"https://127.0.0.1:{closed_port}/reclaim/webhooks/{CONN_ID}",
        "--secret-env",
        SECRET_VARIABLE,
        "--file",
        str(body_file),
    )

    assert sent.returncode == 1
    assert "ConnectionError" in sent.stdout
    assert "1 without any response" in sent.stderr


def test_send_missing_body_file(receiver, run_cli, tmp_path):
    completed = run_cli(
        "send", "--url", receiver.webhook_url(CONN_ID), "--secret-env", SECRET_VARIABLE, "--file", str(tmp_path / "missing.json")
    )

    assert_one_line_error(completed, 1, "missing.json")


def test_send_secret_variable_not_set(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)

    completed = run_cli(
        "send", "--url", receiver.webhook_url(CONN_ID), "--secret-env", SECRET_VARIABLE, "--file", str(body_file),
        secret_variable=False,
    )

    assert_one_line_error(completed, 2, SECRET_VARIABLE)


def test_inbox_list_unknown_connection(run_cli):
    completed = run_cli("inbox", "list", "--conn-id", "no_such_connection")

    assert_one_line_error(completed, 1, "'no_such_connection' not found", "AIRFLOW_CONN_NO_SUCH_CONNECTION")


def test_inbox_list_missing_database_file(run_cli, tmp_path):
    missing = tmp_path / "nothing-here.db"

    completed = run_cli("inbox", "list", "--conn-id", CONN_ID, "--inbox-url", f"sqlite:///{missing}")

    assert_one_line_error(completed, 1, "not found", str(missing))
    assert not missing.exists()


def test_serve_refuses_plain_http_off_loopback(run_cli):
    completed = run_cli("serve", "--host", "0.0.0.0", "--port", str(find_free_port()), timeout=60)

    assert_one_line_error(completed, 2, "--self-signed", "--insecure")
    assert "not a loopback address" in completed.stderr


def test_serve_rejects_missing_certificate(run_cli, tmp_path):
    completed = run_cli(
        "serve", "--port", str(find_free_port()), "--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem")
    )

    assert_one_line_error(completed, 1, "certificate file not found")


def test_serve_port_in_use(receiver, run_cli, tmp_path):
    completed = run_cli("serve", "--port", str(receiver.port), "--self-signed", "--cert-dir", str(tmp_path / "tls"))

    assert_one_line_error(completed, 1, "could not start", str(receiver.port))
    assert "address already in use" in completed.stderr


def test_serve_insecure_with_tls_is_usage_error(run_cli):
    completed = run_cli("serve", "--port", str(find_free_port()), "--self-signed", "--insecure", timeout=60)

    assert_one_line_error(completed, 2, "--insecure")


def test_serve_plain_http_on_loopback(receiver_environment, tmp_path):
    port = find_free_port()
    log_path = tmp_path / "plain.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [*cli_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=receiver_environment.variables(),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        response = None
        deadline = time.monotonic() + 60
        while response is None and time.monotonic() < deadline and process.poll() is None:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/reclaim/health", timeout=2)
            except requests.ConnectionError:
                time.sleep(0.2)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        exit_code = process.wait(timeout=30)

    assert response is not None, log_path.read_text()
    assert response.status_code == 200
    assert exit_code == 0
    assert "TLS: none, plain HTTP" in log_path.read_text()
