"""Apache Airflow provider for Reclaim.ai Scheduling Link webhooks."""

__version__ = "0.1.0"
