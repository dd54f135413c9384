"""`edge-hub approvals list [--pending] [--limit N] | show ID | approve ID [--hash H]
[--reason TEXT] | deny ID --reason TEXT`, each with --json (docs/approvals.md).

`approve` without --hash approves the action it prints, read in the same transaction; with
--hash (the one `show` printed) it also refuses an action changed since.

They go through the hub's API when a hub URL is known (--hub, $EDGE_HUB_URL, the credentials
file: hub/cli/local.py), as the token's user: central IT and regional managers decide from
their desks, and the API enforces the role and scope (a regional manager sees and decides only
its regions' requests; 403 is one line and exit 1, a request not pending, expired or changed
409, exit 1). With --db (or no hub URL) the person at the hub host acts as a local actor
(`local:$USER`, or --as NAME); the rules still refuse self-approval and count two distinct
approvers for chain-wide actions. --json prints the same either way: what the API answers.
"""

from __future__ import annotations

import argparse
import re
import time
from typing import Any

from edge_common.output import age
from hub.cli.common import UsageError, ago, escape, print_json, table
from hub.cli.tickets import add_args, list_max, local_actor, parse_id, parse_limit, where

MAX_REASON = 500


def register(sub, add_db=None) -> None:
    p = sub.add_parser(
        "approvals", help="actions waiting for a person's approval",
        description="Actions waiting for a person's approval. Through the hub's API when a "
                    "hub URL is known (--hub, $EDGE_HUB_URL, the credentials file), as the "
                    "token's user and inside its scope; else on the database of --db as a "
                    "local actor.")
    asub = p.add_subparsers(dest="approvals_cmd", metavar="ACTION", required=True)
    q = asub.add_parser("list", help="approval requests you may see, newest first")
    q.add_argument("--pending", action="store_true", help="only those still pending")
    q.add_argument("--limit", metavar="N", help="at most N (default: the hub's "
                                                "limits.list_max, 1000)")
    add_args(q)
    q = asub.add_parser("show", help="one request: the exact action and its hash")
    q.add_argument("id", help="the request's id (approvals list)")
    add_args(q)
    q = asub.add_parser("approve", help="approve the action (the one whose hash you saw)")
    q.add_argument("id", help="the request's id (approvals list)")
    q.add_argument("--hash", help="the action hash `approvals show` printed: refused if the "
                                  "action changed since")
    q.add_argument("--reason", help=f"why (recorded; at most {MAX_REASON} characters)")
    add_args(q, as_user=True)
    q = asub.add_parser("deny", help="deny a request (its requester may withdraw it)")
    q.add_argument("id", help="the request's id (approvals list)")
    q.add_argument("--reason", help=f"why (required, recorded; at most {MAX_REASON} "
                                    "characters)")
    add_args(q, as_user=True)
    p.set_defaults(func=cmd_approvals)


def _line(r: dict[str, Any]) -> tuple:
    scope = "chain" if r["chain_wide"] else (r["store"] or r["region"])
    left = "-" if r["status"] != "pending" else age(max(0.0, r["expires"] - time.time()))
    votes = sum(1 for v in r.get("votes", ()) if v["decision"] == "approve")
    return (r["id"], r["action"], scope, r["status"], r["requester"],
            f"{votes}/{r['required']}" if "votes" in r else r["required"],
            ago(r["created"]), left, r["payload_hash"][:16])


def _check(args: argparse.Namespace) -> tuple[int | None, int | None]:
    """The arguments, checked before anything is opened: a mistake is exit 2 in both modes."""
    if args.approvals_cmd == "list":
        return None, parse_limit(args.limit)
    rid = parse_id(args.id)
    if args.approvals_cmd == "approve" and args.hash is not None \
            and not re.fullmatch(r"[0-9a-f]{64}", args.hash):
        raise UsageError("--hash: expected the 64 hexadecimal digits `approvals show` printed")
    reason = getattr(args, "reason", None)
    if args.approvals_cmd == "deny" and not (reason or "").strip():
        raise UsageError("deny needs --reason")
    if reason is not None and len(reason) > MAX_REASON:
        raise UsageError(f"--reason: at most {MAX_REASON} characters")
    return rid, None


def cmd_approvals(args: argparse.Namespace) -> int:
    from hub.domains import approvals

    rid, limit = _check(args)
    with where(args) as (client, db):
        if client:
            r = _remote(client, args, rid, limit)
        else:
            with db.transaction() as tx:
                approvals.expire(tx, time.time)   # an expired request says so, and is audited
            r = _local(db, args, rid, limit)
    if args.json:
        print_json(r)
    elif args.approvals_cmd == "list":
        if not r:
            print("no pending approvals" if args.pending else "no approval requests")
        else:
            print(table(("ID", "ACTION", "SCOPE", "STATUS", "REQUESTER", "NEEDS", "ASKED",
                         "EXPIRES IN", "HASH"), [_line(x) for x in r]))
    else:
        _print_request(r)
    return 0


def _remote(client, args: argparse.Namespace, rid: int | None, limit: int | None):
    """The same through the API (GET/POST /v1/approvals...), as the token's user."""
    if args.approvals_cmd == "list":
        return client.get("/v1/approvals", pending=args.pending, limit=limit)
    if args.approvals_cmd == "show":
        return client.get(f"/v1/approvals/{rid}")
    body = {"reason": args.reason or ""}
    if args.approvals_cmd == "approve":
        if args.hash:
            body["hash"] = args.hash
        return client.post(f"/v1/approvals/{rid}/approve", body)
    return client.post(f"/v1/approvals/{rid}/deny", body)


def _local(db, args: argparse.Namespace, rid: int | None, limit: int | None):
    """On the database as a local actor: what each route does (a local actor sees all)."""
    from hub.domains import approvals

    if args.approvals_cmd == "list":
        with db.read() as tx:
            return approvals.list_requests(tx, pending_only=args.pending,
                                           limit=limit or list_max(args))
    if args.approvals_cmd == "show":
        with db.read() as tx:
            return approvals.show(tx, rid)
    from hub.cli.local import source

    actor = local_actor(args)
    with db.transaction() as tx:
        if args.approvals_cmd == "approve":
            seen = args.hash or approvals.show(tx, rid)["payload_hash"]
            return approvals.approve(tx, time.time, actor, rid, seen, args.reason or "",
                                     source=source())
        return approvals.deny(tx, time.time, actor, rid, args.reason, source=source())


def _print_request(r: dict[str, Any]) -> None:
    e = escape
    print(f"approval {r['id']}: {e(r['action'])} "
          f"{'chain-wide' if r['chain_wide'] else e(r['store'] or r['region'])}, "
          f"{e(r['status'])}; asked by {e(r['requester'])} {ago(r['created'])}, needs "
          f"{r['required']} approver(s)"
          + (f", expires in {age(max(0.0, r['expires'] - time.time()))}"
             if r["status"] == "pending" else ""))
    print(f"action hash: {r['payload_hash']}")
    for k, v in sorted(r["payload"].items()):
        print(f"  {e(k)}: {e(v)}")
    for v in r["votes"]:
        print(f"  {e(v['decision'])} by {e(v['approver'])} ({e(v['role'])})"
              + (f": {e(v['reason'])}" if v["reason"] else ""))
