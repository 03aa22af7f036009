"""The store's SQL must compile for PostgreSQL, because a shared PostgreSQL inbox is the next backend.

These tests run a real workload on SQLite, capture every SQL construct the inbox and the ledger
execute, and compile each one with SQLAlchemy's PostgreSQL dialect. They prove that no
SQLite-only construct is used. They do not prove the behaviour on a PostgreSQL server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlalchemy.sql import ClauseElement

from airflow_provider_reclaim.store.database import get_engine
from airflow_provider_reclaim.store.inbox import Inbox
from airflow_provider_reclaim.store.ledger import Ledger
from airflow_provider_reclaim.store.schema import metadata

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reclaim"


@pytest.fixture
def executed(tmp_path: Path) -> list[ClauseElement]:
    url = f"sqlite:///{tmp_path / 'inbox.db'}"
    statements: list[ClauseElement] = []

    def record(_connection, clause, *_args, **_kwargs) -> None:
        if isinstance(clause, ClauseElement):
            statements.append(clause)

    engine = get_engine(url)
    event.listen(engine, "before_execute", record)
    try:
        inbox, ledger = Inbox(url), Ledger(url)
        for name in ("created-observed.json", "rescheduled-observed.json", "created-observed.json"):
            inbox.store_delivery("conn", (FIXTURES / name).read_bytes(), {"Content-Type": "application/json"})
        inbox.store_delivery("conn", b"not json", {})
        ledger.route_pending("conn", "dag/run", max_events=10)
        ledger.claimed_by("conn", "dag/run")
        ledger.meetings("conn")
        inbox.count_by_state("conn")
        inbox.list_quarantine("conn")
    finally:
        event.remove(engine, "before_execute", record)
    return statements


def test_workload_executes_statements(executed: list[ClauseElement]):
    kinds = {type(statement).__name__ for statement in executed}

    assert {"Insert", "Update", "Select"} <= kinds
    assert len(executed) >= 10


def test_statements_compile_for_postgresql(executed: list[ClauseElement]):
    dialect = postgresql.dialect()

    for statement in executed:
        compiled = str(statement.compile(dialect=dialect))
        assert "PRAGMA" not in compiled
        assert "INSERT OR" not in compiled


def test_schema_compiles_for_postgresql():
    dialect = postgresql.dialect()

    for table in metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=dialect))
        assert ddl.startswith("\nCREATE TABLE")
        for index in table.indexes:
            assert "CREATE INDEX" in str(CreateIndex(index).compile(dialect=dialect))
