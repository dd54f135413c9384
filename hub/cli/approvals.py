"""`edge-hub approvals list [--pending] | show ID | approve ID [--hash H] [--reason] |
deny ID --reason` (docs/approvals.md).

`approve` without --hash approves the action it prints, read in the same transaction; with
--hash (the one `show` printed) it also refuses an action changed since. With --db the person
at the hub host acts as a local actor (`local:$USER`, or --as NAME); the rules still refuse
self-approval and count two distinct approvers for chain-wide actions.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from edge_common.output import age
from hub.cli.common import UsageError, ago, escape, print_json, store_of, table
from hub.cli.tickets import local_actor, parse_id


def register(sub, add_db) -> None:
    p = sub.add_parser("approvals", help="actions waiting for a person's approval")
    asub = p.add_subparsers(dest="approvals_cmd", metavar="ACTION", required=True)
    q = asub.add_parser("list", help="approval requests, newest first")
    q.add_argument("--pending", action="store_true", help="only those still pending")
    add_db(q)
    q = asub.add_parser("show", help="one request: the exact action and its hash")
    q.add_argument("id")
    add_db(q)
    q = asub.add_parser("approve", help="approve the action (the one whose hash you saw)")
    q.add_argument("id")
    q.add_argument("--hash", help="the action hash `approvals show` printed: refused if the "
                                  "action changed since")
    q.add_argument("--reason", help="why (recorded)")
    q.add_argument("--as", dest="as_user", help="who you are (default $USER)")
    add_db(q)
    q = asub.add_parser("deny", help="deny a request")
    q.add_argument("id")
    q.add_argument("--reason", help="why (required, recorded)")
    q.add_argument("--as", dest="as_user", help="who you are (default $USER)")
    add_db(q)
    p.set_defaults(func=cmd_approvals)


def _line(r: dict[str, Any]) -> tuple:
    scope = "chain" if r["chain_wide"] else (r["store"] or r["region"])
    left = "-" if r["status"] != "pending" else age(max(0.0, r["expires"] - time.time()))
    return (r["id"], r["action"], scope, r["status"], r["requester"], r["required"],
            ago(r["created"]), left, r["payload_hash"][:16])


def cmd_approvals(args: argparse.Namespace) -> int:
    from hub.domains import approvals

    db = store_of(args)
    with db.transaction() as tx:
        approvals.expire(tx, time.time)   # an expired request says so, and is audited
    if args.approvals_cmd == "list":
        with db.read() as tx:
            rows = approvals.list_requests(tx, pending_only=args.pending)
        if args.json:
            print_json(rows)
        elif not rows:
            print("no pending approvals" if args.pending else "no approval requests")
        else:
            print(table(("ID", "ACTION", "SCOPE", "STATUS", "REQUESTER", "NEEDS", "ASKED",
                         "EXPIRES IN", "HASH"), [_line(r) for r in rows]))
        return 0
    rid = parse_id(args.id)
    actor = local_actor(args)
    if args.approvals_cmd == "show":
        with db.read() as tx:
            r = approvals.show(tx, rid)
    elif args.approvals_cmd == "approve":
        with db.transaction() as tx:
            seen = args.hash or approvals.show(tx, rid)["payload_hash"]
            r = approvals.approve(tx, time.time, actor, rid, seen, args.reason or "")
    else:
        if not (args.reason or "").strip():
            raise UsageError("deny needs --reason")
        with db.transaction() as tx:
            r = approvals.deny(tx, time.time, actor, rid, args.reason)
    if args.json:
        print_json(r)
        return 0
    e = escape
    print(f"approval {r['id']}: {e(r['action'])} "
          f"{'chain-wide' if r['chain_wide'] else e(r['store'] or r['region'])}, "
          f"{r['status']}; asked by {e(r['requester'])} {ago(r['created'])}, needs "
          f"{r['required']} approver(s)")
    print(f"action hash: {r['payload_hash']}")
    for k, v in sorted(r["payload"].items()):
        print(f"  {e(k)}: {e(v)}")
    for v in r["votes"]:
        print(f"  {v['decision']} by {e(v['approver'])} ({e(v['role'])})"
              + (f": {e(v['reason'])}" if v["reason"] else ""))
    return 0
