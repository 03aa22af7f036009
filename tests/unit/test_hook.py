"""Tests of the ``reclaim_webhook`` connection settings and hook."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from airflow_provider_reclaim.hooks.webhook import (
    DEFAULT_MAX_BODY_BYTES,
    InvalidConnectionSettings,
    ReclaimWebhookHook,
    UnknownConnection,
    WebhookSettings,
    settings_from_connection,
)
from airflow_provider_reclaim.store.inbox import DeliveryOutcome
from airflow_provider_reclaim.wire.signature import NoSecretConfigured, SignatureMismatch, sign

CONN_ID = "reclaim_hook_test"
CURRENT_SECRET = "whsec-current-4f9a1c"
OLDER_SECRET = "whsec-older-2b7d0e"
OLDEST_SECRET = "whsec-oldest-c81f55"


def test_settings_password_only():
    settings = settings_from_connection(CONN_ID, CURRENT_SECRET, {})

    assert settings.conn_id == CONN_ID
    assert settings.secrets == (CURRENT_SECRET,)
    assert settings.inbox_url is None
    assert settings.max_body_bytes == 1024 * 1024


PREVIOUS_SECRETS_FORMS = {
    "list": [OLDER_SECRET, OLDEST_SECRET],
    "newline string": f"{OLDER_SECRET}\n{OLDEST_SECRET}\n",
    "CRLF string": f"{OLDER_SECRET}\r\n{OLDEST_SECRET}",
    "comma string": f"{OLDER_SECRET}, {OLDEST_SECRET}",
    "list with blanks": ["", OLDER_SECRET, "  ", OLDEST_SECRET],
}


@pytest.mark.parametrize("previous", PREVIOUS_SECRETS_FORMS.values(), ids=PREVIOUS_SECRETS_FORMS.keys())
def test_settings_previous_secrets(previous):
    settings = settings_from_connection(CONN_ID, CURRENT_SECRET, {"previous_secrets": previous})

    assert settings.secrets == (CURRENT_SECRET, OLDER_SECRET, OLDEST_SECRET)


@pytest.mark.parametrize("previous", ["", None, []], ids=["empty string", "null", "empty list"])
def test_settings_previous_secrets_empty(previous):
    settings = settings_from_connection(CONN_ID, CURRENT_SECRET, {"previous_secrets": previous})

    assert settings.secrets == (CURRENT_SECRET,)


def test_settings_previous_secrets_wrong_type():
    with pytest.raises(InvalidConnectionSettings):
        settings_from_connection(CONN_ID, CURRENT_SECRET, {"previous_secrets": {"secret": OLDER_SECRET}})


def test_settings_prefixed_extras():
    extra = {
        "extra__reclaim_webhook__previous_secrets": OLDER_SECRET,
        "extra__reclaim_webhook__inbox_url": "sqlite:////var/lib/reclaim/inbox.db",
        "extra__reclaim_webhook__max_body_bytes": "65536",
    }
    settings = settings_from_connection(CONN_ID, CURRENT_SECRET, extra)

    assert settings.secrets == (CURRENT_SECRET, OLDER_SECRET)
    assert settings.inbox_url == "sqlite:////var/lib/reclaim/inbox.db"
    assert settings.max_body_bytes == 65536


def test_settings_plain_extras_win():
    extra = {
        "inbox_url": "sqlite:////plain.db",
        "extra__reclaim_webhook__inbox_url": "sqlite:////prefixed.db",
    }
    settings = settings_from_connection(CONN_ID, CURRENT_SECRET, extra)

    assert settings.inbox_url == "sqlite:////plain.db"


@pytest.mark.parametrize("value", [65536, "65536"], ids=["integer", "string"])
def test_settings_max_body_bytes(value):
    settings = settings_from_connection(CONN_ID, CURRENT_SECRET, {"max_body_bytes": value})

    assert settings.max_body_bytes == 65536


@pytest.mark.parametrize("value", ["", None], ids=["empty string", "null"])
def test_settings_max_body_bytes_default(value):
    settings = settings_from_connection(CONN_ID, CURRENT_SECRET, {"max_body_bytes": value})

    assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES


@pytest.mark.parametrize("value", ["1 MB", "lots", [1024], 100, 0, -5], ids=str)
def test_settings_max_body_bytes_invalid(value):
    with pytest.raises(InvalidConnectionSettings) as caught:
        settings_from_connection(CONN_ID, CURRENT_SECRET, {"max_body_bytes": value})

    assert "max_body_bytes" in str(caught.value)
    assert CONN_ID in str(caught.value)


@pytest.mark.parametrize("password", [None, "", "   "], ids=["null", "empty", "blank"])
def test_settings_no_secret(password):
    settings = settings_from_connection(CONN_ID, password, {})

    assert settings.secrets == ()


def test_settings_repr_hides_secrets():
    settings = settings_from_connection(CONN_ID, CURRENT_SECRET, {"previous_secrets": [OLDER_SECRET]})
    printed_forms = [repr(settings), str(settings), f"{settings}", f"{settings!r}"]

    for text in printed_forms:
        assert CURRENT_SECRET not in text
        assert OLDER_SECRET not in text
        assert CONN_ID in text


def test_settings_is_frozen():
    settings = WebhookSettings(CONN_ID, (CURRENT_SECRET,), None, DEFAULT_MAX_BODY_BYTES)

    with pytest.raises(AttributeError):
        settings.secrets = ()


@pytest.fixture
def inbox_url_for_hook(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'hook-inbox.db'}"


def set_connection(monkeypatch, conn_id: str, password: str | None, extra: dict) -> None:
    connection = {"conn_type": "reclaim_webhook", "extra": extra}
    if password is not None:
        connection["password"] = password
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


@pytest.fixture
def hook(monkeypatch, inbox_url_for_hook) -> ReclaimWebhookHook:
    extra = {"previous_secrets": [OLDER_SECRET], "inbox_url": inbox_url_for_hook, "max_body_bytes": 4096}
    set_connection(monkeypatch, CONN_ID, CURRENT_SECRET, extra)
    return ReclaimWebhookHook(reclaim_conn_id=CONN_ID)


def test_hook_reads_env_connection(hook, inbox_url_for_hook):
    settings = hook.get_settings()

    assert settings.secrets == (CURRENT_SECRET, OLDER_SECRET)
    assert settings.inbox_url == inbox_url_for_hook
    assert settings.max_body_bytes == 4096
    assert hook.get_conn() == settings


def test_hook_sign_with_current_secret(hook, load_body):
    body = load_body("created-observed.json")
    expected_digest = hmac.new(CURRENT_SECRET.encode("utf-8"), body, hashlib.sha256).digest()

    assert hook.sign(body) == "sha256=" + base64.b64encode(expected_digest).decode("ascii")


def test_hook_verify_round_trip(hook, load_body):
    body = load_body("created-observed.json")

    assert hook.verify(body, [hook.sign(body)]) == 0


def test_hook_verify_previous_secret(hook, load_body):
    body = load_body("created-observed.json")

    assert hook.verify(body, [sign(body, OLDER_SECRET)]) == 1


def test_hook_verify_unknown_secret(hook, load_body):
    body = load_body("created-observed.json")

    with pytest.raises(SignatureMismatch):
        hook.verify(body, [sign(body, "whsec-not-configured")])


def test_hook_inbox_uses_connection_url(hook, tmp_path, load_body):
    stored = hook.get_inbox().store_delivery(CONN_ID, load_body("created-observed.json"), {})

    assert stored.outcome is DeliveryOutcome.ACCEPTED
    assert (tmp_path / "hook-inbox.db").is_file()
    assert len(hook.get_ledger().route_pending(CONN_ID, "dag/run-1").events) == 1


def test_hook_test_connection(hook):
    succeeded, message = hook.test_connection()

    assert succeeded is True
    assert CURRENT_SECRET not in message


def test_hook_without_secret(monkeypatch, load_body):
    set_connection(monkeypatch, "reclaim_no_secret", None, {})
    hook = ReclaimWebhookHook(reclaim_conn_id="reclaim_no_secret")
    body = load_body("created-observed.json")

    with pytest.raises(NoSecretConfigured):
        hook.verify(body, [sign(body, "")])
    with pytest.raises(NoSecretConfigured):
        hook.verify(body, [sign(body, "any-secret-at-all")])
    with pytest.raises(NoSecretConfigured):
        hook.sign(body)


def test_hook_test_connection_without_secret(monkeypatch):
    set_connection(monkeypatch, "reclaim_no_secret", "", {})
    succeeded, message = ReclaimWebhookHook(reclaim_conn_id="reclaim_no_secret").test_connection()

    assert succeeded is False
    assert "secret" in message


def test_hook_class_attributes():
    assert ReclaimWebhookHook.conn_type == "reclaim_webhook"
    assert ReclaimWebhookHook.conn_name_attr == "reclaim_conn_id"
    assert ReclaimWebhookHook.hook_name == "Reclaim Webhook"


def test_hook_rejects_other_connection_type(monkeypatch):
    connection = {"conn_type": "http", "password": "an-http-password"}
    monkeypatch.setenv("AIRFLOW_CONN_PLAIN_HTTP", json.dumps(connection))

    with pytest.raises(UnknownConnection, match="is of type 'http', expected 'reclaim_webhook'"):
        ReclaimWebhookHook(reclaim_conn_id="plain_http").get_settings()


def test_hook_missing_connection(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOWHERE_DEFINED", raising=False)

    with pytest.raises(UnknownConnection, match="AIRFLOW_CONN_NOWHERE_DEFINED environment variable"):
        ReclaimWebhookHook(reclaim_conn_id="nowhere_defined").get_settings()
