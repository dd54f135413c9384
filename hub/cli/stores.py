"""`edge-hub stores prune` and `edge-hub store STORE --forget-session`: changes to the stores
themselves (issue 15). Both are admin actions: until the audit domain is on main they are
logged on logger `hub.admin` (docs/hub-defences.md)."""

from __future__ import annotations

import argparse
import logging
import os

from hub.cli.common import EXIT_OK, ago, escape, print_json, store_of, table
from hub.domains import fleet

log = logging.getLogger("hub.admin")


def cmd_forget_session(args: argparse.Namespace) -> int:
    forgotten = fleet.forget_session(store_of(args), args.store)
    # An admin action: until the audit domain lands it is logged (docs/hub-defences.md).
    log.warning("store session forgotten", extra={"store": args.store, "by": args.by,
                                                  **{k: v for k, v in forgotten.items()}})
    if args.json:
        print_json({"store": args.store, "forgotten": forgotten})
    else:
        print(f"store {escape(args.store)}: session {forgotten['birth_session']}/"
              f"{forgotten['death_session']} and seq accounting forgotten; its next birth "
              "brings it online")
    return EXIT_OK


def cmd_stores_prune(args: argparse.Namespace) -> int:
    from hub.app import prune_stores
    from hub.cli.common import parse_duration

    unseen = parse_duration(args.unseen, "--unseen")
    gone = prune_stores(store_of(args), unseen, dry_run=args.dry_run)
    if not args.dry_run and gone:
        log.warning("stores pruned", extra={"stores": ",".join(g["store"] for g in gone)[:2000],
                                            "unseen_s": unseen, "by": args.by})
    if args.json:
        print_json({"dry_run": args.dry_run, "stores": gone})
    elif not gone:
        print(f"no store unseen for {escape(args.unseen)}")
    else:
        print(table(("REGION", "STORE", "LAST SEEN"),
                    [(g["region"], g["store"], ago(g["last_seen"])) for g in gone]))
        print(f"\n{'would remove' if args.dry_run else 'removed'} {len(gone)} store(s) "
              "with their devices, messages and alerts")
    return EXIT_OK


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry in a container
        return "unknown"


def register(sub, add_db) -> None:
    p = sub.add_parser("stores", help="the stores themselves: prune those long unseen")
    ps = p.add_subparsers(dest="stores_command", metavar="ACTION", required=True)
    q = ps.add_parser("prune", help="remove stores not heard from for --unseen, with their "
                                    "devices, messages and alerts")
    q.add_argument("--unseen", required=True, metavar="AGE",
                   help="not heard from for this long: 90d, 12w, 48h...")
    q.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    q.add_argument("--by", default=os.environ.get("USER") or _user(), help="who (logged)")
    add_db(q)
    q.set_defaults(func=cmd_stores_prune)
