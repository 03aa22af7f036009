"""Tests of the receiver's rate-limited rejection log."""

from __future__ import annotations

import logging
import time

import pytest

from airflow_provider_reclaim.receiver.app import _RejectionLog

LOGGER = "airflow_provider_reclaim.receiver.app"


def test_rejections_past_limit_not_logged(caplog: pytest.LogCaptureFixture):
    rejections = _RejectionLog(limit=3, window=60.0)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for attempt in range(10):
            rejections.warning("signature_mismatch", "Rejected delivery %d", attempt)

    assert [record.getMessage() for record in caplog.records] == [
        "Rejected delivery 0",
        "Rejected delivery 1",
        "Rejected delivery 2",
    ]


def test_suppressed_count_reported_next_window(caplog: pytest.LogCaptureFixture):
    rejections = _RejectionLog(limit=1, window=0.2)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for attempt in range(5):
            rejections.warning("missing_signature", "Rejected delivery %d", attempt)
        time.sleep(0.25)
        rejections.warning("missing_signature", "Rejected delivery %d", 5)

    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == "Rejected delivery 0"
    assert messages[1] == "Rejected delivery 5 (4 more missing_signature rejections were not logged)"
    assert len(messages) == 2


def test_reasons_limited_separately(caplog: pytest.LogCaptureFixture):
    rejections = _RejectionLog(limit=1, window=60.0)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        rejections.warning("missing_signature", "first reason")
        rejections.warning("missing_signature", "first reason again")
        rejections.warning("body_too_large", "second reason")

    assert [record.getMessage() for record in caplog.records] == ["first reason", "second reason"]
