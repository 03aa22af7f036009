"""Shared pytest wiring for the end-to-end tests that start real Airflow processes."""

from __future__ import annotations

import logging

import pytest
from airflow_stack import AirflowStack

log = logging.getLogger(__name__)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Store each phase's report on the test item, so fixtures can check in teardown whether the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture(autouse=True)
def _log_airflow_tails_on_failure(request: pytest.FixtureRequest):
    """Log the end of every component log of each ``AirflowStack`` the failed test used."""
    yield

    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed:
        return
    for value in getattr(request.node, "funcargs", {}).values():
        if isinstance(value, AirflowStack):
            log.error(
                "Component logs of the Airflow stack at %s:\n%s", value.base_url, value.format_log_tails()
            )
