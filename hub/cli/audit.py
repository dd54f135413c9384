"""`edge-hub audit list|verify|export|checkpoint`: the audit log on the hub host (--db)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hub.errors import Invalid
from hub.cli import local
from edge_common.output import escape, print_json, table


def register(sub, add_db=None) -> None:
    p = sub.add_parser("audit", help="the audit log: list, verify, export, checkpoint")
    audit = p.add_subparsers(dest="audit_command", metavar="ACTION")
    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])

    s = audit.add_parser("list", help="entries, oldest first")
    s.add_argument("--since", help="from this time on (ISO 8601, such as 2026-12-05 or "
                                   "2026-12-05T08:00Z)")
    s.add_argument("--actor", help="only this actor (user name)")
    s.add_argument("--store", help="only entries about this store")
    s.add_argument("--after", type=int, default=0, help="only entries after this seq")
    s.add_argument("--limit", type=int, default=1000, help="at most this many entries")
    s.add_argument("--json", action="store_true", help="print JSON for scripts")
    local.add_db_args(s)
    s.set_defaults(func=cmd_list)

    s = audit.add_parser("verify", help="walk the hash chain; exit 1 naming the first "
                                        "entry edited, inserted, deleted or reordered")
    s.add_argument("--checkpoint", action="append", default=[], metavar="FILE",
                   help="an exported checkpoint to hold the log to (repeatable)")
    s.add_argument("--keys", help="key ring folder whose public keys are trusted "
                                  "(default: the config's keys.directory)")
    s.add_argument("--json", action="store_true", help="print JSON for scripts")
    local.add_db_args(s)
    s.set_defaults(func=cmd_verify)

    s = audit.add_parser("export", help="every entry as JSON lines, with its hashes "
                                        "(verifiable elsewhere)")
    s.add_argument("--output", "-o", help="file to write (default: standard output)")
    local.add_db_args(s, remote=False)
    s.set_defaults(func=cmd_export)

    s = audit.add_parser("checkpoint", help="sign the head now and write the checkpoint "
                                            "(to --file or the config's audit.checkpoint_file)")
    s.add_argument("--file", help="where to write the checkpoint")
    s.add_argument("--keys", help="key ring folder (default: the config's keys.directory)")
    s.add_argument("--json", action="store_true", help="print JSON for scripts")
    local.add_db_args(s, remote=False)
    s.set_defaults(func=cmd_checkpoint)


def parse_since(text: str | None) -> str | None:
    from hub.domains.audit import parse_since as parse

    try:
        return parse(text)
    except Invalid as err:
        raise Invalid(f"--{err}") from None


def cmd_list(args) -> int:
    from hub.domains import audit

    if not 1 <= args.limit <= 100000 or args.after < 0:
        raise Invalid("--limit must be 1-100000 and --after >= 0")
    since = parse_since(args.since)
    client = local.remote(args)
    if client:
        rows = client.get("/v1/audit", since=since, actor=args.actor, store=args.store,
                          after=args.after or None, limit=args.limit)
        print_entries(rows, args.json)
        return 0
    db = local.open_db(args)
    with db.transaction() as tx:
        rows = audit.entries(tx, since=since, actor=args.actor, store=args.store,
                             after=args.after, limit=args.limit)
        audit.record(tx, local.clock, local.actor(), "audit.read", "audit",
                     {"since": since, "actor": args.actor, "store": args.store}, local.source())
    print_entries(rows, args.json)
    return 0


def print_entries(rows, as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    if not rows:
        print("no audit entries")
        return
    print(table(("SEQ", "TIME", "ACTOR", "ROLE", "ACTION", "OBJECT", "STORE", "SOURCE"),
                [(r["seq"], r["ts"][:19].replace("T", " "),
                  f"{r['actor']} ({r['actor_kind']})" if r["actor_kind"] != "user"
                  else r["actor"], r["role"], r["action"], r["object"], r["store"],
                  r["source"]) for r in rows]))


def _trusted(args):
    """The hub's public keys (trusted to have signed checkpoints), or None without a ring."""
    from hub.keys import KeyRing

    cfg = local.config(args)
    directory = args.keys or cfg.keys.directory or default_keys()
    if not Path(directory).is_dir() or not any(Path(directory).iterdir()):
        return None
    if hasattr(KeyRing, "load_public"):  # public keys only: no passphrase needed
        return KeyRing.load_public(directory)
    return KeyRing.load(directory, _passphrase(cfg)).public_keys()


def _passphrase(cfg) -> bytes | None:
    if not cfg.keys.passphrase_file:
        return None
    try:
        return Path(cfg.keys.passphrase_file).read_bytes().strip()
    except OSError as err:
        raise Invalid(f"keys.passphrase_file: cannot read it: {err.strerror}") from err


def default_keys() -> str:
    import os

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "edge-hub" / "keys")


def cmd_verify(args) -> int:
    from hub.domains import audit
    from hub.errors import TamperError

    client = local.remote(args)
    if client:
        if args.checkpoint:
            raise Invalid("--checkpoint is checked on the hub host (--db): the point of a "
                          "checkpoint is not to trust the hub's answer")
        out = client.get("/v1/audit/verify")
        return _verdict(args, out, None)
    external = [(f"file {path}", audit.load_checkpoint_file(path)) for path in args.checkpoint]
    trusted = _trusted(args)
    if external and trusted is None:
        raise Invalid("--checkpoint needs the hub's public keys to check its signature "
                      "(--keys DIR or keys.directory in the config)")
    db = local.open_db(args)
    try:
        report = audit.verify(db, trusted=trusted, external=external)
        verdict, ok = None, True
    except TamperError as err:
        verdict, ok = str(err), False
    with db.transaction() as tx:
        audit.record(tx, local.clock, local.actor(), "audit.verify", "audit",
                     {"ok": ok, "fault": verdict}, local.source())
    if not ok:
        return _verdict(args, {"ok": False, "fault": verdict}, trusted)
    return _verdict(args, {"ok": True, "entries": report.entries, "head_seq": report.head_seq,
                           "head_hash": report.head_hash, "checkpoints": report.checkpoints,
                           "signatures_checked": trusted is not None}, trusted)


def _verdict(args, out, trusted) -> int:
    if not out.get("ok"):
        if args.json:
            print_json(out)
        print(f"edge-hub: audit log NOT intact: {escape(out.get('fault'))}", file=sys.stderr)
        return 1
    if args.json:
        print_json(out)
        return 0
    print(f"audit log intact: {out['entries']} entries, head {escape(out['head_hash'][:16])}…")
    for cp in out["checkpoints"]:
        print(f"  matches checkpoint {escape(cp['from'])} at entry {cp['seq']} "
              f"({cp['ts']}, key {escape(cp['kid'])})")
    if trusted is None and out["checkpoints"]:
        print("  (checkpoint signatures not checked: no key ring; pass --keys)")
    return 0


def cmd_export(args) -> int:
    from hub.domains import audit

    db = local.open_db(args)
    with db.transaction() as tx:
        audit.record(tx, local.clock, local.actor(), "audit.export", "audit",
                     {"output": args.output}, local.source())
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for row in audit.iter_raw(db):
            out.write(json.dumps(row, ensure_ascii=True, sort_keys=True) + "\n")
    finally:
        if args.output:
            out.close()
    return 0


def cmd_checkpoint(args) -> int:
    from hub.domains.audit import checkpoint
    from hub.keys import KeyRing

    cfg = local.config(args)
    directory = args.keys or cfg.keys.directory or default_keys()
    ring = KeyRing.load(directory, _passphrase(cfg))
    db = local.open_db(args)
    with db.transaction() as tx:
        cp = checkpoint.make(tx, local.clock, ring)
    path = args.file or cfg.audit.checkpoint_file
    if path:
        checkpoint.write_file(path, cp)
    if args.json:
        print_json(cp)
    else:
        print(f"checkpoint at entry {cp['checkpoint']['seq']} signed by key {cp['sig']['kid']}"
              + (f", written to {escape(path)}" if path else ""))
    return 0
