"""`edge-hub acl render`: the broker's ACL and password file from the hub's stores and users."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hub.cli import local
from edge_common.output import escape


def register(sub, add_db=None) -> None:
    p = sub.add_parser("acl", help="broker accounts from the hub's registry")
    acl = p.add_subparsers(dest="acl_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    r = acl.add_parser("render", help="write the Mosquitto ACL (and password file)")
    r.add_argument("--output", "-o", help="ACL file to write (default: standard output)")
    r.add_argument("--passwords", help="also write the Mosquitto password file here (users "
                                       "log in with their name and API token)")
    r.add_argument("--hub-user", help="the hub's broker account (default: the config's "
                                      "broker.username, else hub)")
    local.add_db_args(r, remote=False)
    r.set_defaults(func=cmd_render)


def _write(path: str, text: str, mode: int) -> None:
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".acl-", dir=str(target.parent))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_render(args) -> int:
    from hub.domains import audit
    from hub.domains.access import authorize
    from hub.domains.access.broker import render_acl, render_passwords, stores
    from hub.domains.access.users import mqtt_accounts, mqtt_password_hash

    cfg = local.config(args)
    hub_user = args.hub_user or cfg.broker.username or "hub"
    actor = local.actor()
    authorize(actor, "users.manage")
    db = local.open_db(args)
    with db.transaction() as tx:
        known, users = stores(tx), mqtt_accounts(tx)
        audit.record(tx, local.clock, actor, "users.acl-render", "broker",
                     {"stores": len(known), "users": len(users)}, local.source())
    acl = render_acl(known, users, hub_user=hub_user, prefix=cfg.broker.prefix,
                     checkpoint_topic=cfg.audit.checkpoint_topic)
    extra = {}
    if cfg.broker.username and cfg.broker.password_file:
        secret = Path(cfg.broker.password_file).read_text().strip()
        extra[cfg.broker.username] = mqtt_password_hash(secret)
    if args.output:
        _write(args.output, acl, 0o644)
    else:
        print(acl, end="")
    if args.passwords:
        _write(args.passwords, render_passwords(users, extra), 0o600)
    if args.output or args.passwords:
        print(f"{len(known)} stores, {len(users)} users"
              + (f"; ACL in {escape(args.output)}" if args.output else "")
              + (f"; passwords in {escape(args.passwords)}" if args.passwords else ""))
    return 0
