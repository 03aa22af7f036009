"""Hints and short texts that ``airflow-reclaim send`` prints for unexpected outcomes.

The HTTP tests produce most of these cases against a real server. These cover the texts that
a loopback test cannot produce, such as another platform's error wording.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_reclaim.cli import hints
from airflow_provider_reclaim.cli.main import build_parser
from airflow_provider_reclaim.hooks.webhook import describe_missing_connection
from airflow_provider_reclaim.simulator import Outcome

URL = "https://127.0.0.1:8443/reclaim/webhooks/reclaim_default"


def send_args(*options: str, url: str = URL):
    return build_parser().parse_args(["send", "--url", url, "--secret", "s", *options])


def response(status: int | None, json_status: str | None = None, reason: str | None = None, **fields):
    """Return an object with the DeliveryResult attributes that the hints read."""
    values = {
        "http_status": status,
        "json_status": json_status,
        "reason": reason,
        "error": None,
        "expected": Outcome.ACCEPTED,
        "label": "000 file event.json",
    }
    values.update(fields)
    return SimpleNamespace(**values)


@pytest.mark.parametrize("reason", sorted(hints.REASON_HINTS))
def test_reason_hint_names_status_and_connection(reason):
    hint = hints.delivery_hint(response(401, "rejected", reason), send_args("--file", "event.json"))

    assert hint.startswith(f"401 {reason}: ")
    assert "{" not in hint
    if "{conn_id" in hints.REASON_HINTS[reason]:
        assert "'reclaim_default'" in hint


def test_unknown_reason_has_no_hint():
    hint = hints.delivery_hint(
        response(401, "rejected", "new_reason_code"), send_args("--file", "event.json")
    )

    assert hint is None


def test_rejected_404_without_reason_no_hint():
    # Without the reason, a 404 {"status": "rejected"} is still the receiver's, not a missing route.
    hint = hints.delivery_hint(response(404, "rejected"), send_args("--file", "event.json"))

    assert hint is None


def test_duplicate_hint_for_scenario_omits_expect():
    hint = hints.delivery_hint(response(200, "duplicate"), send_args("--demo-scenario"))

    assert hint.startswith("200 duplicate: the receiver had already stored this event")
    assert "--expect" not in hint
    assert "empty inbox" in hint


def test_duplicate_hint_only_when_accepted_expected():
    result = response(200, "duplicate", expected=Outcome.QUARANTINED)

    assert hints.delivery_hint(result, send_args("--file", "event.json")) is None


def test_quarantined_hint_names_inspect_command():
    hint = hints.delivery_hint(
        response(202, "quarantined", "body is not JSON"), send_args("--file", "event.json")
    )

    assert hint.endswith("airflow-reclaim inbox quarantine --conn-id reclaim_default")


HOSTNAME_MISMATCH = (
    "SSLError: HTTPSConnectionPool(host='localhost', port=8443): Max retries exceeded with url: /x "
    '(Caused by SSLError(SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate '
    "verify failed: Hostname mismatch, certificate is not valid for 'localhost'. (_ssl.c:1006)\")))"
)
WINDOWS_REFUSED = (
    "ConnectionError: HTTPSConnectionPool(host='127.0.0.1', port=8443): Max retries exceeded with url: /x "
    "(Caused by NewConnectionError('<urllib3.connection.HTTPSConnection object at 0x0>: Failed to "
    "establish a new connection: [WinError 10061] No connection could be made because the target "
    "machine actively refused it'))"
)
ABORTED = "ConnectionError: ('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"


def test_hostname_mismatch_hint():
    result = response(None, error=HOSTNAME_MISMATCH)
    args = send_args("--file", "event.json", url="https://localhost:8443/reclaim/webhooks/x")

    hint = hints.delivery_hint(result, args)

    assert hints.describe_response(result) == "error: SSLError, certificate not valid for this host"
    assert hint.startswith("the server's certificate is not valid for localhost: ")


def test_windows_refused_connection_hint():
    result = response(None, error=WINDOWS_REFUSED)

    hint = hints.delivery_hint(result, send_args("--file", "event.json"))

    assert hints.describe_response(result) == "error: ConnectionError, connection refused"
    assert hint.startswith("nothing listens at 127.0.0.1:8443: ")


def test_default_port_in_refused_hint():
    result = response(None, error=WINDOWS_REFUSED)

    hint = hints.delivery_hint(
        result, send_args("--file", "event.json", url="https://127.0.0.1/reclaim/webhooks/x")
    )

    assert hint.startswith("nothing listens at 127.0.0.1:443: ")


def test_reset_connection_over_http_hint():
    args = send_args("--file", "event.json", url="http://127.0.0.1:8443/x")

    hint = hints.delivery_hint(response(None, error=ABORTED), args)

    assert hint == "the server at 127.0.0.1:8443 did not answer plain HTTP: if it serves TLS, use https://"


def test_closed_connection_over_https_has_no_hint():
    assert hints.delivery_hint(response(None, error=ABORTED), send_args("--file", "event.json")) is None


def test_shorten_keeps_short_text():
    assert hints.shorten_cell("x" * hints.MAX_CELL_CHARS) == "x" * hints.MAX_CELL_CHARS


def test_shorten_cuts_long_text():
    shortened = hints.shorten_cell("x" * (hints.MAX_CELL_CHARS + 1))

    assert len(shortened) == hints.MAX_CELL_CHARS
    assert shortened.endswith("...")


def test_connection_not_found_without_variable(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_RECLAIM_X", raising=False)

    message = describe_missing_connection("reclaim_x")

    assert message.startswith("connection 'reclaim_x' not found: define it in Airflow")
    assert "AIRFLOW_CONN_RECLAIM_X" in message


def test_connection_not_found_with_blank_variable(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_RECLAIM_X", "  ")

    message = describe_missing_connection("reclaim_x")

    assert "AIRFLOW_CONN_RECLAIM_X is set but empty" in message


def test_connection_not_found_with_unparsable_variable(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_RECLAIM_X", '{"password": "do-not-print"')

    message = describe_missing_connection("reclaim_x")

    assert "AIRFLOW_CONN_RECLAIM_X is set but could not be parsed as a connection" in message
    assert "do-not-print" not in message
