"""`edge-hub stores prune` and `edge-hub store STORE --forget-session`: changes to the stores
themselves (issue 15). Both are admin actions on the hub host (--db), recorded in the audit
log under the local actor, in the same transaction as the change (docs/hub-defences.md)."""

from __future__ import annotations

import argparse

from hub.cli import local
from hub.cli.common import EXIT_OK, ago, escape, print_json, table
from hub.domains import fleet


def cmd_forget_session(args: argparse.Namespace) -> int:
    forgotten = fleet.forget_session(local.open_db(args), args.store, local.clock,
                                     local.actor(), local.source())
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
    gone = prune_stores(local.open_db(args), unseen, dry_run=args.dry_run, clock=local.clock,
                        actor=local.actor(), source=local.source())
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


def register(sub, add_db) -> None:
    p = sub.add_parser("stores", help="the stores themselves: prune those long unseen")
    ps = p.add_subparsers(dest="stores_command", metavar="ACTION", required=True)
    q = ps.add_parser("prune", help="remove stores not heard from for --unseen, with their "
                                    "devices, messages and alerts")
    q.add_argument("--unseen", required=True, metavar="AGE",
                   help="not heard from for this long: 90d, 12w, 48h...")
    q.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    q.add_argument("--json", action="store_true", help="print JSON for scripts")
    local.add_db_args(q, remote=False)
    q.set_defaults(func=cmd_stores_prune)
