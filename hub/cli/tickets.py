"""`edge-hub tickets list [--open] [--store S] [--limit N] | show ID | retry ID` (all --json).

The ITSM key and link, the state the hub last set and learnt, waiting deliveries and the last
delivery error. Text from stores and from the ITSM is escaped (tables escape every cell).

They go through the hub's API when a hub URL is known (--hub, $EDGE_HUB_URL, the credentials
file: hub/cli/local.py), as the token's user: the API decides what its role and scope allow
(a regional manager sees its regions' tickets; `retry` needs `tickets.write`), and a refusal
is one line and exit 1. With --db (or no hub URL) they work on the database as a local actor
(`local:$USER`, or --as NAME), recorded as such in the audit log. Both print the same: --json
is what the API answers (GET /v1/tickets, GET /v1/tickets/{id}, POST /v1/tickets/{id}/retry).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import time
from typing import Any, Iterator

from hub.cli import local
from hub.cli.common import UsageError, ago, escape, print_json, table


def local_actor(args: argparse.Namespace):
    from hub.domains.access import local_actor as make

    name = getattr(args, "as_user", None) or os.environ.get("USER")
    if not name:
        try:
            name = getpass.getuser()
        except (OSError, KeyError):
            name = "unknown"
    return make(f"local:{name}")


def parse_id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        raise UsageError(f"expected a numeric id, got {escape(text[:40])!r}")
    return int(text)


def parse_limit(text: str | None) -> int | None:
    """--limit N (1-100000), or None: the hub's limits.list_max."""
    if text is None:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 100000:
        raise UsageError(f"--limit: expected a number 1-100000, got {escape(text[:40])!r}")
    return int(text)


@contextlib.contextmanager
def where(args: argparse.Namespace) -> Iterator[tuple[Any, Any]]:
    """(client, None) through the API, or (None, db) on the database of --db (closed after).

    --as names the local actor, so it is refused through the API (the token says who acts)."""
    client = local.remote(args)  # refuses --hub with --db
    if client:
        if getattr(args, "as_user", None):
            raise UsageError("--as is for --db: through the API you act as the token's user")
        yield client, None
        return
    db = local.open_db(args)
    try:
        yield None, db
    finally:
        db.close()


def list_max(args: argparse.Namespace) -> int:
    """The API's default list length (limits.list_max of the config), for --db."""
    return local.config(args).limits.list_max


def add_args(q, *, as_user: bool = False) -> None:
    q.add_argument("--json", action="store_true", help="print JSON for scripts (the same "
                                                       "through the API as with --db)")
    if as_user:
        q.add_argument("--as", dest="as_user", metavar="NAME",
                       help="with --db: who you are (default $USER; recorded as local:NAME)")
    local.add_db_args(q)


def register(sub, add_db=None) -> None:
    p = sub.add_parser(
        "tickets", help="tickets the hub opened in the chain's ITSM",
        description="Tickets the hub opened in the chain's ITSM. Through the hub's API when a "
                    "hub URL is known (--hub, $EDGE_HUB_URL, the credentials file), as the "
                    "token's user; else on the database of --db as a local actor.")
    tsub = p.add_subparsers(dest="tickets_cmd", metavar="ACTION", required=True)
    q = tsub.add_parser("list", help="tickets with their ITSM key, state and delivery errors")
    q.add_argument("--open", action="store_true", help="only tickets still open")
    q.add_argument("--store", help="only this store")
    q.add_argument("--limit", metavar="N", help="at most N, newest first (default: the hub's "
                                                "limits.list_max, 1000)")
    add_args(q)
    q = tsub.add_parser("show", help="one ticket and its deliveries")
    q.add_argument("id", help="the ticket's id (tickets list)")
    add_args(q)
    q = tsub.add_parser("retry", help="queue a ticket's failed deliveries again (tickets.write;"
                                      " audited)")
    q.add_argument("id", help="the ticket's id (tickets list)")
    add_args(q, as_user=True)
    p.set_defaults(func=cmd_tickets)


def cmd_tickets(args: argparse.Namespace) -> int:
    from hub.domains.tickets import rules

    tid = None if args.tickets_cmd == "list" else parse_id(args.id)
    limit = parse_limit(args.limit) if args.tickets_cmd == "list" else None
    if args.tickets_cmd == "list" and args.store is not None:
        from hub.config import check_id

        why = check_id(args.store)
        if why:
            raise UsageError(f"--store: {why}")
    with where(args) as (client, db):
        if args.tickets_cmd == "list":
            if client:
                rows = client.get("/v1/tickets", open=args.open, store=args.store, limit=limit)
            else:
                with db.read() as tx:
                    rows = rules.list_tickets(tx, open_only=args.open, store=args.store,
                                              limit=limit or list_max(args))
            return _print_list(args, rows)
        if args.tickets_cmd == "show":
            if client:
                t = client.get(f"/v1/tickets/{tid}")
            else:
                with db.read() as tx:
                    t = rules.show(tx, tid)
            return _print_ticket(args, t)
        if client:
            done = client.post(f"/v1/tickets/{tid}/retry", {})
        else:
            with db.transaction() as tx:
                n = rules.retry(tx, time.time, tid, local_actor(args), source=local.source())
            done = {"ticket": tid, "requeued": n}
    if args.json:
        print_json(done)
    else:
        n = done["requeued"]
        print(f"ticket {done['ticket']}: {n} failed deliveries queued again" if n else
              f"ticket {done['ticket']}: nothing had failed")
    return 0


def _print_list(args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    if args.json:
        print_json(rows)
    elif not rows:
        print("no open tickets" if args.open else "no tickets")
    else:
        print(table(
            ("ID", "STORE", "DEVICE", "PROBLEM", "STATE", "ITSM", "ITSM STATE", "WAITING",
             "FAILED", "ERROR"),
            [(t["id"], t["store"], t["device"], t["family"], t["state"],
              t["external_key"] or "(not yet)", t["external_state"],
              sum(n for s, n in t["intents"].items() if s in ("pending", "sending")),
              t["intents"].get("failed", 0),
              (t["last_error"] or "")[:60] or None) for t in rows]))
    return 0


def _print_ticket(args: argparse.Namespace, t: dict[str, Any]) -> int:
    if args.json:
        print_json(t)
        return 0
    e = escape
    print(f"ticket {t['id']}: {e(t['store'])} {e(t['device'])} {e(t['family'])}, "
          f"{e(t['state'])} (hub), opened {ago(t['opened'])}, {t['events']} alert "
          f"transitions, reopened {t['reopened']} times")
    print(f"ITSM: {e(t['connector'] or 'no route')} {e(t['external_key'] or '(not yet)')} "
          f"{e(t['external_url'] or '')} state {e(t['external_state'] or '-')}")
    print(f"correlation key: {e(t['correlation'])}"
          + (f"; follows ticket {t['previous_id']}" if t["previous_id"] else ""))
    if t["last_error"]:
        print(f"last delivery error: {e(t['last_error'])}")
    print()
    print(table(("INTENT", "ACTION", "STATUS", "ATTEMPTS", "MADE", "DONE", "ERROR"),
                [(i["id"], i["action"], i["status"], i["attempts"], ago(i["created"]),
                  ago(i["done_at"]), (i["last_error"] or "")[:60] or None)
                 for i in t["intents"]]))
    if any(i["status"] == "failed" for i in t["intents"]):
        print(f"\nfailed deliveries wait for a person: once fixed, "
              f"edge-hub tickets retry {t['id']}")
    return 0
