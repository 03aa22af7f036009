"""Airflow plugin that mounts the webhook receiver on Airflow's API server under ``/reclaim``.

Airflow applies no authentication to plugin applications. The receiver authenticates each
request itself, by its ``x-reclaim-signature-256`` signature.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_reclaim.receiver.app import URL_PREFIX, create_app


class ReclaimWebhookPlugin(AirflowPlugin):
    """Serve ``POST /reclaim/webhooks/{conn_id}`` and ``GET /reclaim/health`` on the API server."""

    name = "reclaim_webhooks"
    fastapi_apps = [
        {
            "app": create_app(),
            "url_prefix": URL_PREFIX,
            "name": "Reclaim webhook receiver",
        }
    ]
