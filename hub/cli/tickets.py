"""`edge-hub tickets list [--open] [--store S] [--json] | show ID [--json] | retry ID`.

The ITSM key and link, the state the hub last set and learnt, waiting deliveries and the last
delivery error. Text from stores and from the ITSM is escaped (tables escape every cell).
With --db the person at the hub host acts as a local actor (`local:$USER`, or --as NAME),
recorded as such in the audit log.
"""

from __future__ import annotations

import argparse
import getpass
import os
import time

from hub.cli.common import UsageError, ago, escape, print_json, store_of, table


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


def register(sub, add_db) -> None:
    p = sub.add_parser("tickets", help="tickets the hub opened in the chain's ITSM")
    tsub = p.add_subparsers(dest="tickets_cmd", metavar="ACTION", required=True)
    q = tsub.add_parser("list", help="tickets with their ITSM key, state and delivery errors")
    q.add_argument("--open", action="store_true", help="only tickets still open")
    q.add_argument("--store", help="only this store")
    add_db(q)
    q = tsub.add_parser("show", help="one ticket and its deliveries")
    q.add_argument("id")
    add_db(q)
    q = tsub.add_parser("retry", help="queue a ticket's failed deliveries again")
    q.add_argument("id")
    q.add_argument("--as", dest="as_user", help="who you are (default $USER)")
    add_db(q, json_flag=False)
    p.set_defaults(func=cmd_tickets)


def cmd_tickets(args: argparse.Namespace) -> int:
    from hub.domains.tickets import rules

    db = store_of(args)
    if args.tickets_cmd == "list":
        with db.read() as tx:
            rows = rules.list_tickets(tx, open_only=args.open, store=args.store)
        if args.json:
            print_json(rows)
        elif not rows:
            print("no open tickets" if args.open else "no tickets")
        else:
            print(table(
                ("ID", "STORE", "DEVICE", "PROBLEM", "STATE", "ITSM", "ITSM STATE", "WAITING",
                 "ERROR"),
                [(t["id"], t["store"], t["device"], t["family"], t["state"],
                  t["external_key"] or "(not yet)", t["external_state"],
                  sum(n for s, n in t["intents"].items() if s in ("pending", "sending")),
                  (t["last_error"] or "")[:60] or None) for t in rows]))
        return 0
    tid = parse_id(args.id)
    if args.tickets_cmd == "show":
        with db.read() as tx:
            t = rules.show(tx, tid)
        if args.json:
            print_json(t)
            return 0
        e = escape
        print(f"ticket {t['id']}: {e(t['store'])} {e(t['device'])} {e(t['family'])}, "
              f"{t['state']} (hub), opened {ago(t['opened'])}, {t['events']} alert "
              f"transitions, reopened {t['reopened']} times")
        print(f"ITSM: {e(t['connector'] or 'no route')} {e(t['external_key'] or '(not yet)')} "
              f"{e(t['external_url'] or '')} state {e(t['external_state'] or '-')}")
        print(f"correlation key: {t['correlation']}"
              + (f"; follows ticket {t['previous_id']}" if t["previous_id"] else ""))
        if t["last_error"]:
            print(f"last delivery error: {e(t['last_error'])}")
        print()
        print(table(("INTENT", "ACTION", "STATUS", "ATTEMPTS", "MADE", "DONE", "ERROR"),
                    [(i["id"], i["action"], i["status"], i["attempts"], ago(i["created"]),
                      ago(i["done_at"]), (i["last_error"] or "")[:60] or None)
                     for i in t["intents"]]))
        return 0
    with db.transaction() as tx:
        n = rules.retry(tx, time.time, tid, local_actor(args))
    print(f"ticket {tid}: {n} failed deliveries queued again" if n else
          f"ticket {tid}: nothing had failed")
    return 0
