"""``airflow-reclaim send``, ``inbox`` and ``bookings`` against a real server over HTTPS.

Each command runs as its own process with the module's ``AIRFLOW_CONN_<ID>`` variables, as a
user would run it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
import requests
from receiver_harness import (
    CONN_ID,
    DEMO_CONN_ID,
    ReceiverEnvironment,
    ReceiverProcess,
    cli_command,
    copy_fixture,
    find_free_port,
    make_environment,
)

from airflow_provider_reclaim.receiver.tls import write_self_signed_certificate
from airflow_provider_reclaim.store.ledger import Ledger

SECRET_VARIABLE = "RECLAIM_TEST_WEBHOOK_SECRET"
WRONG_SECRET_VARIABLE = "RECLAIM_TEST_WRONG_SECRET"
OBSERVED_MEETING_ID = "Qx7LmN2pR4sT"

# Connections that only the misconfigured_receiver has.
NO_SECRET_CONN_ID = "reclaim_no_secret"
SMALL_BODY_CONN_ID = "reclaim_small_body"
INVALID_EXTRAS_CONN_ID = "reclaim_invalid_extras"

# The longest "actual" cell that send prints, as send.py cuts it.
MAX_CELL_CHARS = 60


@pytest.fixture(scope="module")
def run_cli(receiver_environment):
    """Return a function that runs ``airflow-reclaim ARGS`` and returns the finished process."""

    def run(
        *args: str,
        secret_variable: bool = True,
        extra_env: dict[str, str] | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        env = receiver_environment.variables()
        if secret_variable:
            env[SECRET_VARIABLE] = receiver_environment.secret
        env.update(extra_env or {})
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


def assert_one_line_error(
    completed: subprocess.CompletedProcess[str], exit_code: int, *fragments: str
) -> None:
    assert completed.returncode == exit_code, completed.stderr
    assert "Traceback" not in completed.stderr
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("airflow-reclaim: error:")
    for fragment in fragments:
        assert fragment in last_line


def send_args(url: str, body_file, *options: str) -> list[str]:
    """Return ``send`` arguments that sign ``body_file`` with the module's secret and POST it to ``url``."""
    return ["send", "--url", url, "--secret-env", SECRET_VARIABLE, "--file", str(body_file), *options]


def last_stderr_line(completed: subprocess.CompletedProcess[str]) -> str:
    return completed.stderr.strip().splitlines()[-1]


def actual_cell(completed: subprocess.CompletedProcess[str]) -> str:
    """Return the ``actual`` cell of the only row of a ``send`` table."""
    header, _separator, row = completed.stdout.splitlines()[:3]
    start = header.index("actual")
    end = header.index("result")
    return row[start:end].strip()


@dataclasses.dataclass(frozen=True)
class EnvironmentWithMisconfiguredConnections(ReceiverEnvironment):
    """The module's connections plus three ``reclaim_webhook`` connections with setup mistakes."""

    def variables(self) -> dict[str, str]:
        env = super().variables()
        connections = {
            NO_SECRET_CONN_ID: {"conn_type": "reclaim_webhook", "extra": {"inbox_url": self.inbox_url}},
            SMALL_BODY_CONN_ID: {
                "conn_type": "reclaim_webhook",
                "password": self.secret,
                "extra": {"inbox_url": self.inbox_url, "max_body_bytes": 1024},
            },
            INVALID_EXTRAS_CONN_ID: {
                "conn_type": "reclaim_webhook",
                "password": self.secret,
                "extra": {"inbox_url": self.inbox_url, "max_body_bytes": "one megabyte"},
            },
        }
        for conn_id, connection in connections.items():
            env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(connection)
        return env


@pytest.fixture(scope="module")
def misconfigured_receiver(receiver_environment, tmp_path_factory) -> Iterator[ReceiverProcess]:
    """A TLS server with the module's secret and EnvironmentWithMisconfiguredConnections."""
    base = make_environment(tmp_path_factory.mktemp("misconfigured"))
    environment = EnvironmentWithMisconfiguredConnections(
        **{**dataclasses.asdict(base), "secret": receiver_environment.secret}
    )
    process = ReceiverProcess(environment, tmp_path_factory.mktemp("misconfigured_receiver"))
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture(scope="module")
def plain_http_port(receiver_environment, tmp_path_factory) -> Iterator[int]:
    """Port of ``airflow-reclaim serve`` on 127.0.0.1 without TLS, stopped after the module."""
    port = find_free_port()
    log_path = tmp_path_factory.mktemp("plain_receiver") / "plain.log"
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
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            try:
                requests.get(f"http://127.0.0.1:{port}/reclaim/health", timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        yield port
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


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
    assert table.stdout.splitlines()[0].split() == [
        "id",
        "identity_key",
        "kind",
        "meeting_id",
        "state",
        "deliveries",
    ]
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
    assert "already stored this event" in last_stderr_line(second)
    assert "--expect duplicate or --expect any" in last_stderr_line(second)
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
    assert {outcome["status"] for outcome in outcomes if outcome["http_status"] == 200} == {
        "accepted",
        "duplicate",
    }

    quarantined = run_cli("inbox", "quarantine", "--conn-id", DEMO_CONN_ID, "--json")

    assert quarantined.returncode == 0, quarantined.stderr
    entries = json.loads(quarantined.stdout)
    assert len(entries) == sum(1 for outcome in outcomes if outcome["http_status"] == 202)
    assert all(entry["body_bytes"] > 0 for entry in entries)


def test_send_without_trusted_certificate_fails(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)

    sent = run_cli(
        "send",
        "--url",
        receiver.webhook_url(CONN_ID),
        "--secret-env",
        SECRET_VARIABLE,
        "--file",
        str(body_file),
        "--json",
    )

    assert sent.returncode == 1
    outcomes = json.loads(sent.stdout)
    assert outcomes[0]["http_status"] is None
    assert "SSL" in outcomes[0]["error"]
    assert "CERTIFICATE_VERIFY_FAILED" in outcomes[0]["error"]
    assert "--cacert <cert-dir>/reclaim-receiver.crt" in outcomes[0]["hint"]


def test_send_untrusted_certificate_table_hint(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)

    sent = run_cli(*send_args(receiver.webhook_url(CONN_ID), body_file))

    assert sent.returncode == 1
    assert actual_cell(sent) == "error: SSLError, certificate not trusted"
    assert "HTTPSConnectionPool" not in sent.stdout
    assert last_stderr_line(sent).endswith(
        "the server's certificate is not trusted: pass --cacert <cert-dir>/reclaim-receiver.crt "
        "(or --no-verify-tls for a throwaway test)"
    )


def test_send_with_another_servers_certificate(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)
    other_certificate = write_self_signed_certificate(tmp_path / "other_tls").certfile

    sent = run_cli(*send_args(receiver.webhook_url(CONN_ID), body_file, "--cacert", str(other_certificate)))

    assert sent.returncode == 1
    assert actual_cell(sent) == "error: SSLError, certificate not trusted"
    assert f"the server's certificate is not signed by {other_certificate}" in last_stderr_line(sent)


def test_send_plain_http_to_tls_port(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)

    sent = run_cli(*send_args(f"http://127.0.0.1:{receiver.port}/reclaim/webhooks/{CONN_ID}", body_file))

    assert sent.returncode == 1
    assert actual_cell(sent) == "error: ConnectionError, connection closed without a response"
    assert last_stderr_line(sent).endswith(
        f"the server at 127.0.0.1:{receiver.port} did not answer plain HTTP: if it serves TLS, use https://"
    )


def test_send_https_to_plain_http_server(plain_http_port, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)

    url = f"https://127.0.0.1:{plain_http_port}/reclaim/webhooks/{CONN_ID}"

    sent = run_cli(*send_args(url, body_file, "--json"))

    assert sent.returncode == 1
    outcomes = json.loads(sent.stdout)
    assert "WRONG_VERSION_NUMBER" in outcomes[0]["error"]
    assert outcomes[0]["hint"] == (
        f"the server at 127.0.0.1:{plain_http_port} does not speak TLS: "
        "if it serves plain HTTP on loopback, use http://"
    )
    assert last_stderr_line(sent).endswith(outcomes[0]["hint"])


def test_send_wrong_secret_shows_reason(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)
    wrong_secret = {WRONG_SECRET_VARIABLE: f"wrong-{secrets.token_hex(16)}"}
    command = ["send", "--url", receiver.webhook_url(CONN_ID), "--secret-env", WRONG_SECRET_VARIABLE]
    command += ["--cacert", str(receiver.certfile), "--file", str(body_file)]

    table = run_cli(*command, extra_env=wrong_secret)
    as_json = run_cli(*command, "--json", extra_env=wrong_secret)

    assert table.returncode == 1
    assert actual_cell(table) == "401 rejected (signature_mismatch)"
    assert "previous_secrets of connection 'reclaim_http'" in last_stderr_line(table)
    assert wrong_secret[WRONG_SECRET_VARIABLE] not in table.stdout + table.stderr
    assert as_json.returncode == 1
    outcome = json.loads(as_json.stdout)[0]
    assert outcome["http_status"] == 401
    assert outcome["status"] == "rejected"
    assert outcome["reason"] == "signature_mismatch"
    assert outcome["error"] is None
    assert outcome["hint"].startswith("401 signature_mismatch: the signing secret differs")


def test_send_unknown_connection_shows_hint(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)

    url = receiver.webhook_url("no_such_connection")

    sent = run_cli(*send_args(url, body_file, "--cacert", str(receiver.certfile)))

    assert sent.returncode == 1
    assert actual_cell(sent) == "404 rejected (unknown_connection)"
    assert last_stderr_line(sent).endswith(
        "404 unknown_connection: the receiver has no reclaim_webhook connection 'no_such_connection': "
        "check the last part of the URL, or define the connection where the receiver runs"
    )


def test_send_to_path_without_receiver(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)
    misspelled_url = f"{receiver.base_url}/reclaim/webhook/{CONN_ID}"

    sent = run_cli(*send_args(misspelled_url, body_file, "--cacert", str(receiver.certfile), "--json"))

    assert sent.returncode == 1
    outcome = json.loads(sent.stdout)[0]
    assert outcome["http_status"] == 404
    assert outcome["status"] is None
    assert outcome["reason"] is None
    assert (
        outcome["hint"] == "404 no receiver at this path: the URL must end with /reclaim/webhooks/<conn_id>"
    )
    assert last_stderr_line(sent).endswith(outcome["hint"])


@pytest.mark.parametrize(
    ("conn_id", "body_padding", "expected_actual", "expected_hint"),
    [
        (
            NO_SECRET_CONN_ID,
            0,
            "401 rejected (no_secret_configured)",
            f"401 no_secret_configured: connection {NO_SECRET_CONN_ID!r} on the receiver "
            "has no webhook secret: set its password",
        ),
        (
            SMALL_BODY_CONN_ID,
            2048,
            "413 rejected (body_too_large)",
            "413 body_too_large: the body is larger than the max_body_bytes extra of "
            f"connection {SMALL_BODY_CONN_ID!r}",
        ),
        (
            INVALID_EXTRAS_CONN_ID,
            0,
            "503 rejected (connection_misconfigured)",
            f"503 connection_misconfigured: connection {INVALID_EXTRAS_CONN_ID!r} on the receiver "
            "has invalid extras",
        ),
    ],
)
def test_send_to_misconfigured_connection(
    misconfigured_receiver, run_cli, tmp_path, conn_id, body_padding, expected_actual, expected_hint
):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)
    # Trailing whitespace keeps the body valid JSON and makes it larger than max_body_bytes.
    body_file.write_bytes(body_file.read_bytes() + b" " * body_padding)
    url = misconfigured_receiver.webhook_url(conn_id)

    # A 503 is retried after its Retry-After of 30 s unless retries are off.
    options = ["--cacert", str(misconfigured_receiver.certfile), "--max-retries", "0"]
    sent = run_cli(*send_args(url, body_file, *options))

    assert sent.returncode == 1
    assert actual_cell(sent) == expected_actual
    assert expected_hint in last_stderr_line(sent)


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
    assert actual_cell(sent) == "error: ConnectionError, connection refused"
    assert "1 without any response" in sent.stderr
    assert last_stderr_line(sent).endswith(
        f"nothing listens at 127.0.0.1:{closed_port}: "
        "start the receiver, or correct the host and port in --url"
    )


def test_send_cut_long_error_in_table(run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)
    # A listener that never responds, so the request times out with an error that has no hint.
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/reclaim/webhooks/{CONN_ID}"
        table = run_cli(*send_args(url, body_file, "--timeout", "0.5"))
        as_json = run_cli(*send_args(url, body_file, "--timeout", "0.5", "--json"))
    finally:
        silent.close()

    assert table.returncode == 1
    cell = actual_cell(table)
    assert len(cell) == MAX_CELL_CHARS
    assert cell.startswith("error: ReadTimeout: HTTPSConnectionPool(host='127.0.0.1'")
    assert cell.endswith("...")
    assert as_json.returncode == 1
    outcome = json.loads(as_json.stdout)[0]
    assert outcome["error"].endswith("Read timed out. (read timeout=0.5)")
    assert outcome["hint"] is None


def test_send_missing_body_file(receiver, run_cli, tmp_path):
    completed = run_cli(
        "send",
        "--url",
        receiver.webhook_url(CONN_ID),
        "--secret-env",
        SECRET_VARIABLE,
        "--file",
        str(tmp_path / "missing.json"),
    )

    assert_one_line_error(completed, 1, "missing.json")


def test_send_secret_variable_not_set(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)

    completed = run_cli(
        "send",
        "--url",
        receiver.webhook_url(CONN_ID),
        "--secret-env",
        SECRET_VARIABLE,
        "--file",
        str(body_file),
        secret_variable=False,
    )

    assert_one_line_error(completed, 2, SECRET_VARIABLE)


def test_inbox_list_unknown_connection(run_cli):
    completed = run_cli("inbox", "list", "--conn-id", "no_such_connection")

    assert_one_line_error(completed, 1, "'no_such_connection' not found", "AIRFLOW_CONN_NO_SUCH_CONNECTION")


def test_send_connection_variable_not_parsable(receiver, run_cli, tmp_path):
    body_file = copy_fixture("cancelled-observed.json", tmp_path)
    # Cut-off JSON, with a made-up password that must not appear in the message.
    broken_value = '{"conn_type": "reclaim_webhook", "password": "not-printed-' + secrets.token_hex(8)
    command = ["send", "--url", receiver.webhook_url(CONN_ID), "--conn-id", "reclaim_broken"]
    command += ["--file", str(body_file)]

    completed = run_cli(*command, extra_env={"AIRFLOW_CONN_RECLAIM_BROKEN": broken_value})

    assert_one_line_error(
        completed,
        1,
        "'reclaim_broken' not found",
        "AIRFLOW_CONN_RECLAIM_BROKEN is set but could not be parsed as a connection",
        "Check its JSON or URI",
    )
    assert broken_value not in completed.stderr
    assert "not-printed-" not in completed.stderr


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
        "serve",
        "--port",
        str(find_free_port()),
        "--certfile",
        str(tmp_path / "cert.pem"),
        "--keyfile",
        str(tmp_path / "key.pem"),
    )

    assert_one_line_error(completed, 1, "certificate file not found")


def test_serve_port_in_use(receiver, run_cli, tmp_path):
    completed = run_cli(
        "serve", "--port", str(receiver.port), "--self-signed", "--cert-dir", str(tmp_path / "tls")
    )

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
