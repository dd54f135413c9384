"""`edge-hub tickets ...` and `edge-hub approvals ...` on the hub database (--db).

    edge-hub tickets list [--open] [--store S] [--json]
    edge-hub tickets show ID [--json]
    edge-hub tickets retry ID
    edge-hub approvals list [--pending] [--json]
    edge-hub approvals show ID [--json]
    edge-hub approvals approve ID [--hash HASH] [--reason TEXT]
    edge-hub approvals deny ID --reason TEXT

With --db the person at the hub host acts as a local actor (kind "local", named by --as or
$USER), recorded as such in the audit log; the rules still refuse self-approval and count two
distinct approvers for chain-wide actions. Through the API (issue 12) the caller's own user,
role and scope decide. Text from stores is escaped before it reaches the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import os
import time
from typing import Any

from hub.errors import HubError


def esc(value: Any) -> str:
    """Printable text: control characters (terminal escapes) shown as \\xNN, never raw."""
    text = "-" if value is None else str(value)
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _out():
    from edge_agent.cli import output

    return output


def _ago(ts: float | None) -> str:
    return "-" if ts is None else _out().age(max(0.0, time.time() - ts)) + " ago"


def _local_actor(args):
    from hub.domains.access import Actor

    name = getattr(args, "as_user", None) or os.environ.get("USER") or _user()
    return Actor("local", f"local:{name}", "hq-admin")


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _id(text: str) -> int:
    if not text.isdigit() or len(text) > 18:
        from hub.cli import UsageError

        raise UsageError(f"expected a numeric id, got {esc(text)[:40]!r}")
    return int(text)


# tickets ----------------------------------------------------------------------------------------

def cmd_tickets(args: argparse.Namespace) -> int:
    from hub.cli import _store
    from hub.domains.tickets import rules
    from hub.ticketing import ensure_schema

    db = _store(args)
    ensure_schema(db)   # a hub that never ran with --tickets has no ticket tables yet
    if args.tickets_cmd == "list":
        with db.read() as tx:
            rows = rules.list_tickets(tx, open_only=args.open, store=args.store)
        if args.json:
            _out().print_json(rows)
        elif not rows:
            print("no open tickets" if args.open else "no tickets")
        else:
            print(_out().table(
                ("ID", "STORE", "DEVICE", "PROBLEM", "STATE", "ITSM", "ITSM STATE", "WAITING",
                 "ERROR"),
                [(t["id"], esc(t["store"]), esc(t["device"]), esc(t["family"]), t["state"],
                  esc(t["external_key"] or "(not yet)"), esc(t["external_state"]),
                  sum(n for s, n in t["intents"].items() if s in ("pending", "sending")),
                  esc((t["last_error"] or "")[:60]) or None) for t in rows]))
        return 0
    tid = _id(args.id)
    if args.tickets_cmd == "show":
        with db.read() as tx:
            t = rules.show(tx, tid)
        if args.json:
            _out().print_json(t)
            return 0
        print(f"ticket {t['id']}: {esc(t['store'])} {esc(t['device'])} {esc(t['family'])}, "
              f"{t['state']} (hub), opened {_ago(t['opened'])}, {t['events']} alert "
              f"transitions, reopened {t['reopened']} times")
        print(f"ITSM: {t['connector'] or 'no route'} {esc(t['external_key'] or '(not yet)')} "
              f"{esc(t['external_url'] or '')} state {esc(t['external_state'])}")
        print(f"correlation key: {t['correlation']}"
              + (f"; follows ticket {t['previous_id']}" if t["previous_id"] else ""))
        if t["last_error"]:
            print(f"last delivery error: {esc(t['last_error'])}")
        print()
        print(_out().table(("INTENT", "ACTION", "STATUS", "ATTEMPTS", "MADE", "DONE", "ERROR"),
                           [(i["id"], i["action"], i["status"], i["attempts"],
                             _ago(i["created"]), _ago(i["done_at"]),
                             esc((i["last_error"] or "")[:60]) or None)
                            for i in t["intents"]]))
        return 0
    with db.transaction() as tx:
        n = rules.retry(tx, time.time, tid, _local_actor(args))
    print(f"ticket {tid}: {n} failed deliveries queued again" if n else
          f"ticket {tid}: nothing had failed")
    return 0


# approvals --------------------------------------------------------------------------------------

def _approval_line(r: dict[str, Any]) -> tuple:
    scope = "chain" if r["chain_wide"] else esc(r["store"] or r["region"])
    return (r["id"], esc(r["action"]), scope, r["status"], esc(r["requester"]),
            f"{r['required']}", _ago(r["created"]),
            "-" if r["status"] != "pending" else
            _out().age(max(0.0, r["expires"] - time.time())), r["payload_hash"][:16])


def cmd_approvals(args: argparse.Namespace) -> int:
    from hub.cli import UsageError, _store
    from hub.domains import approvals
    from hub.ticketing import ensure_schema

    db = _store(args)
    ensure_schema(db)
    with db.transaction() as tx:
        approvals.expire(tx, time.time)   # an expired request says so, and is audited
    if args.approvals_cmd == "list":
        with db.read() as tx:
            rows = approvals.list_requests(tx, pending_only=args.pending)
        if args.json:
            _out().print_json(rows)
        elif not rows:
            print("no pending approvals" if args.pending else "no approval requests")
        else:
            print(_out().table(("ID", "ACTION", "SCOPE", "STATUS", "REQUESTER", "NEEDS",
                                "ASKED", "EXPIRES IN", "HASH"),
                               [_approval_line(r) for r in rows]))
        return 0
    rid = _id(args.id)
    actor = _local_actor(args)
    if args.approvals_cmd == "show":
        with db.read() as tx:
            r = approvals.show(tx, rid)
    elif args.approvals_cmd == "approve":
        with db.transaction() as tx:
            # Without --hash, the approval binds the action as printed below, read in this
            # same transaction; with it, also the one `approvals show` printed earlier.
            seen = args.hash or approvals.show(tx, rid)["payload_hash"]
            r = approvals.approve(tx, time.time, actor, rid, seen, args.reason or "")
    else:
        if not (args.reason or "").strip():
            raise UsageError("deny needs --reason")
        with db.transaction() as tx:
            r = approvals.deny(tx, time.time, actor, rid, args.reason)
    if args.json:
        _out().print_json(r)
        return 0
    print(f"approval {r['id']}: {esc(r['action'])} "
          f"{'chain-wide' if r['chain_wide'] else esc(r['store'] or r['region'])}, "
          f"{r['status']}; asked by {esc(r['requester'])} {_ago(r['created'])}, needs "
          f"{r['required']} approver(s)")
    print(f"action hash: {r['payload_hash']}")
    for k, v in sorted(r["payload"].items()):
        print(f"  {esc(k)}: {esc(v)}")
    for v in r["votes"]:
        print(f"  {v['decision']} by {esc(v['approver'])} ({esc(v['role'])})"
              + (f": {esc(v['reason'])}" if v["reason"] else ""))
    return 0


def register(sub, common) -> None:
    """Add the `tickets` and `approvals` command groups to the edge-hub parser."""
    p = sub.add_parser("tickets", help="tickets the hub opened in the chain's ITSM")
    tsub = p.add_subparsers(dest="tickets_cmd", metavar="ACTION", required=True)
    q = tsub.add_parser("list", help="tickets with their ITSM key, state and delivery errors")
    q.add_argument("--open", action="store_true", help="only tickets still open")
    q.add_argument("--store", help="only this store")
    common(q)
    q = tsub.add_parser("show", help="one ticket and its deliveries")
    q.add_argument("id")
    common(q)
    q = tsub.add_parser("retry", help="queue a ticket's failed deliveries again")
    q.add_argument("id")
    q.add_argument("--as", dest="as_user", help="who you are (default $USER)")
    common(q, json_flag=False)
    p.set_defaults(func=cmd_tickets)

    p = sub.add_parser("approvals", help="actions waiting for a person's approval")
    asub = p.add_subparsers(dest="approvals_cmd", metavar="ACTION", required=True)
    q = asub.add_parser("list", help="approval requests, newest first")
    q.add_argument("--pending", action="store_true", help="only those still pending")
    common(q)
    q = asub.add_parser("show", help="one request: the exact action and its hash")
    q.add_argument("id")
    common(q)
    q = asub.add_parser("approve", help="approve the action whose hash you saw")
    q.add_argument("id")
    q.add_argument("--hash", help="the action hash `approvals show` printed: refused if the "
                                  "action changed since")
    q.add_argument("--reason", help="why (recorded)")
    q.add_argument("--as", dest="as_user", help="who you are (default $USER)")
    common(q)
    q = asub.add_parser("deny", help="deny a request")
    q.add_argument("id")
    q.add_argument("--reason", help="why (required, recorded)")
    q.add_argument("--as", dest="as_user", help="who you are (default $USER)")
    common(q)
    p.set_defaults(func=cmd_approvals)


__all__ = ["register", "esc", "HubError"]
