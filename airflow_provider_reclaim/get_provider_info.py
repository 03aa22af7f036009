"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_reclaim import __version__


def get_provider_info() -> dict[str, Any]:
    """Return the provider's hooks, triggers, operators, connection type and plugin."""
    return {
        "package-name": "airflow-provider-reclaim",
        "name": "Reclaim",
        "description": "Receive Reclaim.ai Scheduling Link webhooks and route them into DAG tasks.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Reclaim",
                "external-doc-url": "https://help.reclaim.ai/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Reclaim", "python-modules": ["airflow_provider_reclaim.hooks.webhook"]},
        ],
        "triggers": [
            {"integration-name": "Reclaim", "python-modules": ["airflow_provider_reclaim.triggers.inbox"]},
        ],
        "operators": [
            {"integration-name": "Reclaim", "python-modules": ["airflow_provider_reclaim.operators.route"]},
        ],
        "connection-types": [
            {
                "connection-type": "reclaim_webhook",
                "hook-class-name": "airflow_provider_reclaim.hooks.webhook.ReclaimWebhookHook",
                "hook-name": "Reclaim Webhook",
                # Declarative form fields, read by Airflow 3.2 and newer. Airflow 3.1 calls the
                # hook's get_connection_form_widgets() and get_ui_field_behaviour() instead.
                "conn-fields": {
                    "previous_secrets": {
                        "label": "Previous secrets (rotation)",
                        "description": "Older webhook secrets that are still accepted, one per line.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "inbox_url": {
                        "label": "Inbox database URL",
                        "description": "SQLAlchemy URL of the inbox. Empty: reclaim_inbox.db under AIRFLOW_HOME.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "max_body_bytes": {
                        "label": "Maximum body size (bytes)",
                        "description": "Larger requests are rejected with 413 before they are read.",
                        "schema": {"type": ["integer", "null"], "default": 1048576, "minimum": 1024},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["host", "schema", "login", "port"],
                    "relabeling": {"password": "Webhook secret"},
                    "placeholders": {
                        "password": "the secret shown in Reclaim's webhook settings",
                        "inbox_url": "sqlite:////path/to/reclaim_inbox.db",
                    },
                },
            }
        ],
        "plugins": [
            {
                "name": "reclaim_webhooks",
                "plugin-class": "airflow_provider_reclaim.plugins.receiver.ReclaimWebhookPlugin",
            }
        ],
    }
