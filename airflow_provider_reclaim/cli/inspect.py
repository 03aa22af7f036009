"""The ``airflow-reclaim inbox`` and ``bookings`` subcommands: print what the receiver stored."""

from __future__ import annotations

import argparse
from typing import Any

from airflow_provider_reclaim.cli.common import (
    EXIT_OK,
    add_common_options,
    add_inbox_options,
    non_negative_int,
    open_store,
    print_json,
    print_table,
    query_store,
    resolve_inbox_url,
)


def run_inbox_list(args: argparse.Namespace) -> int:
    """Print the events stored for a connection."""
    from airflow_provider_reclaim.store.inbox import Inbox, InboxState

    url = resolve_inbox_url(args.conn_id, args.inbox_url, args.log_level)
    inbox = open_store(Inbox, url)
    states = {InboxState(state) for state in args.state} if args.state else None
    events = query_store(lambda: inbox.list_events(args.conn_id, states=states, limit=args.limit), url)

    if args.json:
        print_json([event.to_json() for event in events])
        return EXIT_OK

    rows = [
        (
            event.id,
            event.identity_key,
            event.kind.value,
            event.meeting_id,
            event.state.value,
            event.delivery_count,
        )
        for event in events
    ]
    print_table(
        ("id", "identity_key", "kind", "meeting_id", "state", "deliveries"),
        rows,
        f"No events stored for connection {args.conn_id!r}"
        + (f" in state {', '.join(sorted(args.state))}." if args.state else "."),
    )
    return EXIT_OK


def run_inbox_quarantine(args: argparse.Namespace) -> int:
    """Print the quarantined deliveries of a connection, without their bodies."""
    from airflow_provider_reclaim.store.inbox import Inbox

    url = resolve_inbox_url(args.conn_id, args.inbox_url, args.log_level)
    inbox = open_store(Inbox, url)
    entries = query_store(lambda: inbox.list_quarantine(args.conn_id), url)

    if args.json:
        print_json(entries)
        return EXIT_OK

    rows = [(entry["id"], entry["received_at"], entry["body_bytes"], entry["reason"]) for entry in entries]
    print_table(
        ("id", "received_at", "body_bytes", "reason"),
        rows,
        f"No quarantined deliveries for connection {args.conn_id!r}.",
    )
    return EXIT_OK


def run_bookings(args: argparse.Namespace) -> int:
    """Print each meeting's current state in the ledger."""
    from airflow_provider_reclaim.store.ledger import Ledger

    url = resolve_inbox_url(args.conn_id, args.inbox_url, args.log_level)
    ledger = open_store(Ledger, url)
    meetings = query_store(lambda: ledger.meetings(args.conn_id, meeting_id=args.meeting_id), url)

    if args.json:
        print_json([meeting.to_json() for meeting in meetings])
        return EXIT_OK

    rows = [
        (
            meeting.meeting_id,
            meeting.status.value,
            meeting.start_time.isoformat() if meeting.start_time else None,
            meeting.last_kind.value,
            meeting.last_event_ts.isoformat(),
            meeting.applied_count,
            meeting.scheduling_link_title,
        )
        for meeting in meetings
    ]
    print_table(
        ("meeting_id", "status", "start_time", "last_kind", "last_event_ts", "applied", "link_title"),
        rows,
        f"No meetings in the ledger for connection {args.conn_id!r}. Events appear here once a DAG routes them.",
    )
    return EXIT_OK


def build_inbox_parser(subparsers: Any) -> None:
    from airflow_provider_reclaim.store.inbox import InboxState

    parser = subparsers.add_parser("inbox", help="Show what the receiver stored for a connection.")
    inbox_commands = parser.add_subparsers(dest="inbox_command", metavar="{list,quarantine}", required=True)

    list_parser = inbox_commands.add_parser(
        "list",
        help="Print stored events: id, identity key, kind, meeting id, state, delivery count.",
        description="Print the events stored for a connection, in arrival order.",
    )
    add_inbox_options(list_parser)
    list_parser.add_argument(
        "--state",
        action="append",
        metavar="STATE",
        choices=[state.value for state in InboxState],
        help="Show only events in this state: "
        + ", ".join(state.value for state in InboxState)
        + ". Repeat the option for several states.",
    )
    list_parser.add_argument(
        "--limit", type=non_negative_int, metavar="N", help="Show at most this many events (default: all)."
    )
    add_common_options(list_parser, "WARNING")
    list_parser.set_defaults(handler=run_inbox_list)

    quarantine_parser = inbox_commands.add_parser(
        "quarantine",
        help="Print quarantined deliveries: signed bodies that are not Scheduling Link events.",
        description="Print the quarantined deliveries of a connection: id, time received, body size "
        "in bytes and why the body was not accepted as an event. Bodies are not printed.",
    )
    add_inbox_options(quarantine_parser)
    add_common_options(quarantine_parser, "WARNING")
    quarantine_parser.set_defaults(handler=run_inbox_quarantine)


def build_bookings_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bookings",
        help="Print each meeting's current state in the ledger.",
        description="Print each meeting's state after the last event a DAG routed: booked, rescheduled "
        "or cancelled, with its start time and scheduling link. Events that are still pending in "
        "the inbox are not shown.",
    )
    add_inbox_options(parser)
    parser.add_argument("--meeting-id", metavar="ID", help="Show only this meeting.")
    add_common_options(parser, "WARNING")
    parser.set_defaults(handler=run_bookings)
