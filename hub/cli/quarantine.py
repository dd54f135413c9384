"""`edge-hub quarantine list|show|drop`: messages split out of a batch that would not commit.

Drops are recorded in the audit log (local actor, --db). Everything here came from a store:
the table and `show` print it through escape(); --json prints it as stored.
"""

from __future__ import annotations

import argparse

from hub.cli import local
from hub.cli.common import EXIT_OK, ago, escape, print_json, table
from hub.domains import quarantine


def cmd_list(args: argparse.Namespace) -> int:
    rows = quarantine.entries(local.open_db(args), store=args.store)
    if args.json:
        print_json(rows)
    elif not rows:
        print("no quarantined messages")
    else:
        print(table(("ID", "STORE", "REGION", "KIND", "SEQ", "WHEN", "TIMES", "REASON"),
                    [(r["id"], r["store"], r["region"], r["kind"], r["seq"], ago(r["at"]),
                      r["times"], r["reason"]) for r in rows]))
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    row = quarantine.entry(local.open_db(args), args.id)
    if args.json:
        print_json(row)
        return EXIT_OK
    for key in ("id", "store", "region", "kind", "seq", "topic", "times", "reason"):
        print(f"{key}: {escape(row[key])}")
    print(f"quarantined: {ago(row['at'])}")
    print(f"payload: {escape(row['payload'])}")
    return EXIT_OK


def cmd_drop(args: argparse.Namespace) -> int:
    from hub.cli.common import UsageError

    if (args.id is None) == (not args.all):
        raise UsageError("quarantine drop: give an ID or --all (not both)")
    ids = quarantine.drop(local.open_db(args), None if args.all else args.id, local.clock,
                          local.actor(), local.source())
    if args.json:
        print_json({"dropped": ids})
    else:
        print(f"dropped {len(ids)} quarantined message(s)"
              + (": " + ", ".join(escape(i) for i in ids[:20]) if ids else "")
              + (" ..." if len(ids) > 20 else ""))
    return EXIT_OK


def _db_args(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    local.add_db_args(p, remote=False)


def register(sub, add_db=None) -> None:
    q = sub.add_parser("quarantine", help="messages that broke a batch's commit, kept aside")
    qs = q.add_subparsers(dest="quarantine_command", metavar="ACTION", required=True)
    p = qs.add_parser("list", help="quarantined messages, newest first")
    p.add_argument("--store", help="only this store's")
    _db_args(p)
    p.set_defaults(func=cmd_list)
    p = qs.add_parser("show", help="one quarantined message with its payload and reason")
    p.add_argument("id", help="its message id (or a unique prefix of at least 4 characters)")
    _db_args(p)
    p.set_defaults(func=cmd_show)
    p = qs.add_parser("drop", help="remove a quarantined message (or all of them)")
    p.add_argument("id", nargs="?", help="its message id (or a unique prefix)")
    p.add_argument("--all", action="store_true", help="remove every quarantined message")
    _db_args(p)
    p.set_defaults(func=cmd_drop)
