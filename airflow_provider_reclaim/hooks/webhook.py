"""Hook for the ``reclaim_webhook`` connection type: secrets, signing and the inbox."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_reclaim.wire import signature

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0 kept the base hook in core.
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""Largest request body the receiver reads (1 MiB). Reclaim's events are a few kilobytes."""


class InvalidConnectionSettings(ValueError):
    """A ``reclaim_webhook`` connection has an extra that cannot be used."""


class UnknownConnection(LookupError):
    """No ``reclaim_webhook`` connection has the requested id. The message explains why and what to do."""


def describe_missing_connection(conn_id: str) -> str:
    """Return why Airflow found no connection ``conn_id`` and what to do, without any secret."""
    # Airflow's environment-variable backend reads AIRFLOW_CONN_ plus the upper-cased id. When it
    # cannot parse the value, Airflow 3.3 logs that at DEBUG level only and reports the
    # connection as not found, as for a missing variable. A blank value is not found either.
    variable = f"AIRFLOW_CONN_{conn_id.upper()}"
    value = os.environ.get(variable)
    if value is None:
        return (
            f"connection {conn_id!r} not found: define it in Airflow, for example with the "
            f"{variable} environment variable"
        )
    if not value.strip():
        return (
            f"connection {conn_id!r} not found: {variable} is set but empty. "
            "Put the connection's JSON or URI in it"
        )
    return (
        f"connection {conn_id!r} not found: {variable} is set but could not be parsed as a "
        "connection. Check its JSON or URI"
    )


@dataclass(frozen=True)
class WebhookSettings:
    """Settings of one ``reclaim_webhook`` connection.

    :param conn_id: The connection id, which is also the last segment of the webhook URL.
    :param secrets: The current webhook secret first, then older secrets still accepted.
    :param inbox_url: SQLAlchemy URL of the inbox database, ``None`` for the default file.
    :param max_body_bytes: Largest request body accepted, in bytes.
    """

    conn_id: str
    secrets: tuple[str, ...]
    inbox_url: str | None
    max_body_bytes: int

    def __repr__(self) -> str:
        # Never show the secrets, only how many there are.
        return (
            f"WebhookSettings(conn_id={self.conn_id!r}, secrets=<{len(self.secrets)} hidden>, "
            f"inbox_url={self.inbox_url!r}, max_body_bytes={self.max_body_bytes})"
        )


def _parse_previous_secrets(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        # The UI form sends one string: one secret per line, or separated by commas.
        return tuple(part.strip() for part in value.replace(",", "\n").splitlines() if part.strip())
    if isinstance(value, Sequence):
        return tuple(str(part).strip() for part in value if str(part).strip())
    raise InvalidConnectionSettings(
        f"previous_secrets must be a string or a list, got {type(value).__name__}"
    )


def _parse_max_body_bytes(conn_id: str, value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_MAX_BODY_BYTES
    try:
        parsed = int(value)
    except (TypeError, ValueError):
        raise InvalidConnectionSettings(
            f"max_body_bytes of connection {conn_id!r} must be a whole number of bytes, got {value!r}"
        ) from None
    if parsed < 1024:
        raise InvalidConnectionSettings(
            f"max_body_bytes of connection {conn_id!r} must be at least 1024, got {parsed}"
        )
    return parsed


def settings_from_connection(conn_id: str, password: str | None, extra: Mapping[str, Any]) -> WebhookSettings:
    """Build :class:`WebhookSettings` from a connection's password and extras.

    Extras may use plain names (``previous_secrets``) or the prefixed form that older Airflow
    forms write (``extra__reclaim_webhook__previous_secrets``).

    :raises InvalidConnectionSettings: An extra has a value of the wrong type or range.
    """

    def read(name: str) -> Any:
        return extra.get(name, extra.get(f"extra__{ReclaimWebhookHook.conn_type}__{name}"))

    current = (password or "").strip()
    secrets = tuple(
        secret for secret in (current, *_parse_previous_secrets(read("previous_secrets"))) if secret
    )
    inbox_url = read("inbox_url") or None
    return WebhookSettings(
        conn_id=conn_id,
        secrets=secrets,
        inbox_url=str(inbox_url) if inbox_url else None,
        max_body_bytes=_parse_max_body_bytes(conn_id, read("max_body_bytes")),
    )


class ReclaimWebhookHook(BaseHook):
    """Read a ``reclaim_webhook`` connection, sign and verify bodies, and open its inbox.

    The webhook secret is the connection's password. Older secrets that are still accepted
    during a rotation go in the ``previous_secrets`` extra. The ``inbox_url`` extra selects the
    inbox database, and ``max_body_bytes`` the largest body the receiver reads.

    :param reclaim_conn_id: The connection id. Reclaim's webhook URL ends with it.
    """

    conn_name_attr = "reclaim_conn_id"
    default_conn_name = "reclaim_default"
    conn_type = "reclaim_webhook"
    hook_name = "Reclaim Webhook"

    def __init__(self, reclaim_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reclaim_conn_id = reclaim_conn_id
        self._settings: WebhookSettings | None = None

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Return the connection form fields for Airflow 3.1, which predates ``conn-fields``."""
        # wtforms ships with Airflow 3.1, where the providers manager calls this method. Its
        # default widgets suffice, and PasswordField's input type marks the field as secret.
        from wtforms import IntegerField, PasswordField, StringField

        return {
            "previous_secrets": PasswordField("Previous secrets (rotation)"),
            "inbox_url": StringField("Inbox database URL"),
            "max_body_bytes": IntegerField("Maximum body size (bytes)"),
        }

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Return the connection form layout for Airflow 3.1, which predates ``ui-field-behaviour``."""
        return {
            "hidden_fields": ["host", "schema", "login", "port"],
            "relabeling": {"password": "Webhook secret"},
            "placeholders": {
                "password": "the secret shown in Reclaim's webhook settings",
                "previous_secrets": "older secrets still accepted, one per line",
                "inbox_url": "sqlite:////path/to/reclaim_inbox.db (default: under AIRFLOW_HOME)",
                "max_body_bytes": str(DEFAULT_MAX_BODY_BYTES),
            },
        }

    def get_settings(self) -> WebhookSettings:
        """Resolve the connection through Airflow's usual lookup and return its settings.

        The lookup order is Airflow's: secrets backends, ``AIRFLOW_CONN_<ID>`` environment
        variables, then the metadata database.

        :raises UnknownConnection: The connection does not exist or is of another type.
        :raises InvalidConnectionSettings: An extra has an unusable value.
        """
        if self._settings is None:
            from airflow.exceptions import AirflowNotFoundException

            try:
                connection = self.get_connection(self.reclaim_conn_id)
            except AirflowNotFoundException:
                raise UnknownConnection(describe_missing_connection(self.reclaim_conn_id)) from None

            # Only reclaim_webhook connections carry a webhook secret: the password of any other
            # connection must never act as one.
            if connection.conn_type != self.conn_type:
                raise UnknownConnection(
                    f"connection {self.reclaim_conn_id!r} is of type {connection.conn_type!r}, "
                    f"expected {self.conn_type!r}"
                )

            extra = connection.extra_dejson if connection.extra else {}
            if not isinstance(extra, Mapping):
                raise InvalidConnectionSettings(
                    f"the extras of connection {self.reclaim_conn_id!r} must be a JSON object"
                )
            self._settings = settings_from_connection(self.reclaim_conn_id, connection.password, extra)
        return self._settings

    def get_conn(self) -> WebhookSettings:
        """Return the connection's settings, as :meth:`get_settings` does."""
        return self.get_settings()

    def sign(self, body: bytes) -> str:
        """Return the ``x-reclaim-signature-256`` value Reclaim would send for ``body``.

        :raises signature.NoSecretConfigured: The connection has no secret.
        """
        secrets = self.get_settings().secrets
        if not secrets:
            raise signature.NoSecretConfigured(f"connection {self.reclaim_conn_id!r} has no webhook secret")
        return signature.sign(body, secrets[0])

    def verify(self, body: bytes, header_values: Sequence[str]) -> int:
        """Verify a raw body against the values of its ``x-reclaim-signature-256`` header.

        :return: The index of the secret that matched: 0 for the current one, more for an older one.
        :raises signature.SignatureError: The delivery cannot be accepted. The subclass names why.
        """
        return signature.verify(body, header_values, self.get_settings().secrets)

    def get_inbox(self):
        """Return the :class:`~airflow_provider_reclaim.store.inbox.Inbox` of this connection."""
        from airflow_provider_reclaim.store.inbox import Inbox

        return Inbox(self.get_settings().inbox_url)

    def get_ledger(self):
        """Return the :class:`~airflow_provider_reclaim.store.ledger.Ledger` of this connection."""
        from airflow_provider_reclaim.store.ledger import Ledger

        return Ledger(self.get_settings().inbox_url)

    def test_connection(self) -> tuple[bool, str]:
        """Check that the connection has a secret and that its inbox database opens."""
        try:
            settings = self.get_settings()
            if not settings.secrets:
                return False, "The connection has no webhook secret: set it in the password field."
            self.get_inbox()
        except Exception as error:
            return False, f"{type(error).__name__}: {error}"
        return True, f"Secret set ({len(settings.secrets)} accepted), inbox database opened."


def connection_uri_extra(previous_secrets: Sequence[str] = (), inbox_url: str | None = None) -> str:
    """Return the extras JSON for a ``reclaim_webhook`` connection, for scripts and tests."""
    extra: dict[str, Any] = {}
    if previous_secrets:
        extra["previous_secrets"] = list(previous_secrets)
    if inbox_url:
        extra["inbox_url"] = inbox_url
    return json.dumps(extra)
