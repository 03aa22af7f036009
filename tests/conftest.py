"""Fixtures shared by the test suites: Reclaim example bodies and per-test inbox databases."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RECLAIM_FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures" / "reclaim"
"""Example Reclaim bodies with made-up people and ids, kept in the repository."""

SHARED_RECLAIM_FIXTURES_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "reclaim"
"""The originals of the repository copies, present only in the development checkout."""


@pytest.fixture
def reclaim_fixtures_dir() -> Path:
    return RECLAIM_FIXTURES_DIR


@pytest.fixture
def shared_reclaim_fixtures_dir() -> Path:
    if not SHARED_RECLAIM_FIXTURES_DIR.is_dir():
        pytest.skip(f"{SHARED_RECLAIM_FIXTURES_DIR} does not exist outside the development checkout")
    return SHARED_RECLAIM_FIXTURES_DIR


@pytest.fixture
def load_body() -> Callable[[str], bytes]:
    """Return a function that reads the exact bytes of one example body by file name."""

    def load(name: str) -> bytes:
        return (RECLAIM_FIXTURES_DIR / name).read_bytes()

    return load


@pytest.fixture
def inbox_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of a fresh SQLite inbox file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'inbox.db'}"


@pytest.fixture
def make_body() -> Callable[..., bytes]:
    """Return a function that builds a minimal event body as UTF-8 JSON bytes.

    ``meeting`` fields given as keyword arguments replace or extend the defaults, and
    ``top_level`` adds fields next to ``type`` and ``event_ts``.
    """

    def build(
        event_type: str,
        meeting_id: str,
        event_ts: str,
        top_level: dict[str, Any] | None = None,
        **meeting_fields: Any,
    ) -> bytes:
        meeting: dict[str, Any] = {
            "meeting_id": meeting_id,
            "attendee": {"attendee_email": "grace.hopper@example.net", "attendee_name": "Grace Hopper"},
            "start_time": "2030-09-01T08:00:00Z",
            "end_time": "2030-09-01T08:30:00Z",
            "scheduling_link_title": "Office hours",
        }
        meeting.update(meeting_fields)
        body: dict[str, Any] = {"type": event_type, "event_ts": event_ts, "api_version": "v2026-04-13"}
        body.update(top_level or {})
        body["meeting"] = meeting
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    return build
