"""`edge-hub users add|list|show|disable|rotate-token`: people and their API tokens (--db)."""

from __future__ import annotations

import sys

from hub.cli import local
from edge_common.output import escape, print_json, table


def register(sub, add_db=None) -> None:
    from hub.domains.access import ROLES

    p = sub.add_parser("users", help="users, roles and API tokens (on the hub host: --db)")
    users = p.add_subparsers(dest="users_command", metavar="ACTION")
    p.set_defaults(func=lambda args: _usage(p))

    a = users.add_parser("add", help="add a user; prints its API token once")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--region", action="append", default=[], help="a region it may see "
                   "(regional-manager; repeatable)")
    a.add_argument("--store", action="append", default=[], help="a store it may see "
                   "(store-manager; repeatable)")
    a.add_argument("--json", action="store_true", help='print {"token": ..., "user": ...}')
    local.add_db_args(a)
    a.set_defaults(func=cmd_add)

    for name, helptext, func in (("list", "list users (never their tokens)", cmd_list),
                                 ("show", "one user", cmd_show),
                                 ("disable", "disable a user: its tokens stop working",
                                  cmd_disable),
                                 ("rotate-token", "revoke a user's tokens and print a new one",
                                  cmd_rotate)):
        s = users.add_parser(name, help=helptext)
        if name != "list":
            s.add_argument("name")
        s.add_argument("--json", action="store_true", help="print JSON for scripts")
        local.add_db_args(s)
        s.set_defaults(func=func)


def _usage(p) -> int:
    p.print_help(sys.stderr)
    return 2


def _print_token(args, user, token: str) -> None:
    if args.json:
        print_json({"token": token, "user": user})
        return
    print(f"user {escape(user['name'])} ({user['role']}): API token (shown once, keep it "
          f"private):")
    print(token)


def cmd_add(args) -> int:
    from hub.domains.access.users import add_user

    client = local.remote(args)
    if client:
        got = client.post("/v1/users", {"name": args.name, "role": args.role,
                                        "regions": args.region, "stores": args.store})
        _print_token(args, got["user"], got["token"])
        return 0
    db = local.open_db(args, create=True)
    limit = local.config(args).limits.users_max
    with db.transaction() as tx:
        user, token = add_user(tx, local.clock, local.actor(), args.name, args.role,
                               regions=args.region, stores=args.store, source=local.source(),
                               max_users=limit)
    _print_token(args, user, token)
    return 0


def cmd_rotate(args) -> int:
    from hub.domains.access.users import rotate_token

    client = local.remote(args)
    if client:
        got = client.post(f"/v1/users/{_quote(args.name)}/rotate-token")
        _print_token(args, got["user"], got["token"])
        return 0
    db = local.open_db(args)
    with db.transaction() as tx:
        user, token = rotate_token(tx, local.clock, local.actor(), args.name,
                                   source=local.source())
    _print_token(args, user, token)
    return 0


def cmd_disable(args) -> int:
    from hub.domains.access.users import disable_user

    client = local.remote(args)
    if client:
        user = client.post(f"/v1/users/{_quote(args.name)}/disable")
    else:
        db = local.open_db(args)
        with db.transaction() as tx:
            user = disable_user(tx, local.clock, local.actor(), args.name,
                                source=local.source())
    if args.json:
        print_json(user)
    else:
        print(f"user {escape(user['name'])} disabled: its tokens are refused from now on")
    return 0


def _quote(name: str) -> str:
    import urllib.parse

    return urllib.parse.quote(name, safe="")


def _read(args, action: str, fn, path: str):
    from hub.domains import audit

    client = local.remote(args)
    if client:
        return client.get(path)
    db = local.open_db(args)
    with db.transaction() as tx:
        result = fn(tx)
        audit.record(tx, local.clock, local.actor(), action, "users", None, local.source())
    return result


def cmd_list(args) -> int:
    from hub.domains.access.users import list_users

    rows = _read(args, "users.read", list_users, "/v1/users")
    if args.json:
        print_json(rows)
    elif not rows:
        print("no users (add the first with: edge-hub users add NAME --role hq-admin --db ...)")
    else:
        print(table(("USER", "ROLE", "REGIONS", "STORES", "STATE", "TOKENS"),
                    [(u["name"], u["role"], ",".join(u["regions"]) or "-",
                      ",".join(u["stores"]) or "-",
                      "disabled" if u["disabled"] else "active", u["active_tokens"])
                     for u in rows]))
    return 0


def cmd_show(args) -> int:
    from hub.domains.access.users import get_user

    user = _read(args, "users.read", lambda tx: get_user(tx, args.name),
                 f"/v1/users/{_quote(args.name)}")
    if args.json:
        print_json(user)
        return 0
    for key in ("name", "role", "regions", "stores", "created_by", "active_tokens"):
        value = user[key]
        print(f"{key.replace('_', ' ')}: "
              f"{escape(', '.join(value) if isinstance(value, list) else value)}")
    print("state: " + ("disabled" if user["disabled"] else "active"))
    return 0
