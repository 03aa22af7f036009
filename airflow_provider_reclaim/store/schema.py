"""Tables of the inbox, the quarantine and the per-meeting ledger.

Every table is scoped by ``conn_id``: one Airflow connection is one webhook endpoint, with its
own stream of events and its own ledger, even when several connections share a database.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# NOTE: get_engine() creates missing tables and never alters existing ones. There are no
# migrations yet, so a change to these tables needs one before it ships.
metadata = MetaData()

inbox_event = Table(
    "reclaim_inbox_event",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conn_id", String(250), nullable=False),
    Column("identity_key", String(512), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("meeting_id", String(200), nullable=False),
    Column("event_ts", DateTime(timezone=True), nullable=False),
    Column("api_version", String(64)),
    # The exact bytes that were verified, so the event can be re-parsed or re-verified later.
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
    # The bounded record sent in asset events and XCom.
    Column("record", JSON, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("last_received_at", DateTime(timezone=True), nullable=False),
    Column("delivery_count", Integer, nullable=False, default=1),
    # pending -> routed | superseded | duplicate; unknown event types are stored as ignored.
    Column("state", String(20), nullable=False),
    Column("routed_by", String(500)),
    Column("routed_at", DateTime(timezone=True)),
    UniqueConstraint("conn_id", "identity_key", name="uq_reclaim_inbox_event_identity"),
    Index("ix_reclaim_inbox_event_state", "conn_id", "state", "id"),
    Index("ix_reclaim_inbox_event_meeting", "conn_id", "meeting_id"),
)

quarantine = Table(
    "reclaim_quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conn_id", String(250), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("headers", JSON, nullable=False),
)

ledger_meeting = Table(
    "reclaim_ledger_meeting",
    metadata,
    Column("conn_id", String(250), primary_key=True),
    Column("meeting_id", String(200), primary_key=True),
    # booked | rescheduled | cancelled
    Column("status", String(20), nullable=False),
    Column("last_identity_key", String(512), nullable=False),
    Column("last_kind", String(20), nullable=False),
    Column("last_event_ts", DateTime(timezone=True), nullable=False),
    Column("start_time", DateTime(timezone=True)),
    Column("end_time", DateTime(timezone=True)),
    Column("scheduling_link_title", String(512)),
    # The latest non-empty custom data seen for the meeting, kept for attribution.
    Column("custom_data", JSON),
    Column("applied_count", Integer, nullable=False, default=1),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

ledger_event = Table(
    "reclaim_ledger_event",
    metadata,
    Column("conn_id", String(250), primary_key=True),
    Column("identity_key", String(512), primary_key=True),
    Column("meeting_id", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("event_ts", DateTime(timezone=True), nullable=False),
    # applied | superseded
    Column("outcome", String(20), nullable=False),
    Column("routed_by", String(500), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
