"""`edge-hub keys|cmd|flags`: the hub's signing keys, signed commands to stores, feature flags.

    edge-hub keys init|rotate|show [--dir DIR] [--passphrase-file F]
    edge-hub cmd STORE [DEVICE] ACTION [--arg K=V ...] [--expires 10m] [--wait S] [--json]
    edge-hub cmd status ID [--json]
    edge-hub cmd list [--store S] [--json]
    edge-hub flags set NAME=on|off (--store S | --region R | --chain)
    edge-hub flags show [--json]

The CLI writes commands and flags to the fleet database (signed, audited); the hub worker
(`edge-hub serve`) publishes them and records results. Registered by hub/cli.py.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from typing import Any

from hub.cli.common import UsageError, age, escape, open_db, print_json, table


def _ring(args: argparse.Namespace):
    from hub.keys import KeyRing, passphrase_from

    return KeyRing.load(args.dir, passphrase_from(args.passphrase_file))


def _trust_toml(ring) -> str:
    keys = ", ".join(f'"{k}"' for k in ring.public_keys().values())
    return f"[trust]\nhub_keys = [{keys}]"


# keys -------------------------------------------------------------------------------------

def cmd_keys(args: argparse.Namespace) -> int:
    from hub.keys import KeyRing, passphrase_from

    if args.keys_command == "init":
        ring = KeyRing.init(args.dir, passphrase_from(args.passphrase_file))
        print(f"created key {ring.current} in {args.dir} (private key mode 0600"
              + (", encrypted" if ring.describe()[0]["encrypted"] else "") + ")")
        print("pin it in each agent's config:\n" + _trust_toml(ring))
        return 0
    ring = _ring(args)
    if args.keys_command == "rotate":
        statement = ring.rotate(passphrase_from(args.passphrase_file))
        print(f"new current key {statement['new']}, endorsed by {statement['old']}; "
              "agents pinning the old key accept it (both are trusted until you retire the old)")
        print(_trust_toml(ring))
        return 0
    if args.keys_command == "retire":
        ring.retire(args.kid)
        print(f"retired {args.kid}")
        return 0
    keys = ring.describe()
    if args.json:
        print_json({"dir": args.dir, "current": ring.current, "keys": keys,
                           "rotations": len(ring.rotations), "trust_toml": _trust_toml(ring)})
        return 0
    print(table(("KID", "CURRENT", "CREATED", "ENCRYPTED", "RETIRED", "PUBLIC KEY"),
                       [(k["kid"], "yes" if k["current"] else "", k["created"],
                         "yes" if k["encrypted"] else "no", k["retired"] or "", k["public"])
                        for k in keys]))
    print("\n" + _trust_toml(ring))
    return 0


# cmd --------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d{1,7})([smhd]?)\Z")


def parse_duration(text: str, option: str = "--expires") -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"{option}: expected a duration such as 90s, 10m, 2h or 1d, "
                         f"got {text[:40]!r}")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def parse_arg(text: str) -> tuple[str, Any]:
    """K=V: true/false become booleans, digits an integer, anything else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--arg: expected K=V, got {text[:60]!r}")
    if value in ("true", "false"):
        return key, value == "true"
    if re.fullmatch(r"-?\d{1,18}", value):
        return key, int(value)
    return key, value


def _actor():
    """An administrator on the hub host working through --db (the API passes its user)."""
    from hub.domains.access import local_actor

    return local_actor(os.environ.get("EDGE_HUB_ACTOR") or os.environ.get("USER") or "unknown")


def _region_of(db, store: str) -> str | None:
    from hub.control import known_stores

    with db.read() as tx:
        return known_stores(tx).get(store)


def cmd_cmd(args: argparse.Namespace) -> int:
    from edge_protocol.commands import CommandError
    from hub.control import request_approval
    from hub.domains.commands import rules

    words = list(args.words)
    db = _store(args)
    if words and words[0] == "status":
        if len(words) != 2:
            raise UsageError("usage: edge-hub cmd status ID")
        with db.read() as tx:
            row = rules.get(tx, words[1])
        _show(row, args.json)
        return 0 if row["status"] != "failed" else 1
    if words and words[0] == "approve":
        if len(words) != 2:
            raise UsageError("usage: edge-hub cmd approve ID")
        from hub.control import approve_command
        from hub.errors import Forbidden

        try:
            row = approve_command(db, time.time, _actor(), words[1], _ring(args))
        except Forbidden as err:  # one's own request, or a role that does not decide
            raise UsageError(str(err)) from err
        row = _wait(db, rules, row, args.wait)
        _show(row, args.json)
        return 1 if row["status"] in ("failed", "rejected") else 0
    if words and words[0] == "list":
        with db.read() as tx:
            rows = rules.list_commands(tx, store=args.store, limit=args.limit)
        if args.json:
            print_json(rows)
        else:
            print(table(("ID", "STORE", "DEVICE", "ACTION", "SEQ", "STATUS", "REASON"),
                               [(r["id"], r["store"], r["device"] or "", r["action"], r["seq"],
                                 r["status"], r["reason"] or "") for r in rows]))
        return 0
    if len(words) not in (2, 3):
        raise UsageError("usage: edge-hub cmd STORE [DEVICE] ACTION [--arg K=V ...]")
    store, action = words[0], words[-1]
    device = words[1] if len(words) == 3 else None
    cmd_args = dict(parse_arg(a) for a in args.arg or ())
    expires = parse_duration(args.expires)
    ring = _ring(args)
    region = args.region or _region_of(db, store)
    try:
        with db.transaction() as tx:
            row = rules.issue(tx, time.time, _actor(), store=store, device=device,
                              action=action, args=cmd_args, expires_s=expires, ring=ring,
                              region=region, approvals=request_approval)
    except CommandError as err:
        raise UsageError(f"{err.code}: {err.detail}") from err
    row = _wait(db, rules, row, args.wait)
    _show(row, args.json)
    if row["status"] == "awaiting_approval" and not args.json:
        print(f"  a high-impact action: it waits for approval request {row.get('approval')} "
              f"(`edge-hub approvals show {row.get('approval')}`, then `edge-hub approvals "
              f"approve {row.get('approval')}` or `edge-hub cmd approve {row['id']}` by "
              "someone else)")
    return 1 if row["status"] in ("failed", "rejected") else 0


def _wait(db, rules, row: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Poll the row until it is finished (or held for an approval), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while (time.monotonic() < deadline and row["status"] in rules.OPEN
           and row["status"] != "awaiting_approval"):
        time.sleep(0.05)
        with db.read() as tx:
            row = rules.get(tx, row["id"])
    return row


def _show(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(row)
        return
    esc = escape
    print(f"command {row['id']}: {row['action']} on {row['store']}"
          + (f"/{row['device']}" if row["device"] else "")
          + f" (seq {row['seq']}): {row['status']}"
          + (f" ({esc(row['reason'])})" if row.get("reason") else ""))
    if row.get("detail"):
        print(f"  {esc(row['detail'])}")
    for key, value in (row.get("output") or {}).items():
        print(f"  {esc(str(key))}: {esc(str(value))[:200]}")


# flags ------------------------------------------------------------------------------------

def cmd_flags(args: argparse.Namespace) -> int:
    from hub.domains.flags import rules as flags

    db = _store(args)
    if args.flags_command == "show":
        with db.read() as tx:
            doc = flags.overview(tx)
        if args.json:
            print_json(doc)
        else:
            print(table(("SCOPE", "NAME", "VALUE", "SET BY", "AT"),
                               [(s["scope"], s["name"], "on" if s["value"] else "OFF",
                                 s["actor"], age(max(0, time.time() - s["at"])) + " ago")
                                for s in doc["settings"]]) if doc["settings"]
                  else "no flags set: every flag is on (the default)")
        return 0
    name, sep, value = args.setting.partition("=")
    if not sep or value not in ("on", "off"):
        raise UsageError(f"expected NAME=on|off, got {args.setting[:60]!r}")
    scope = ("chain" if args.chain else f"region:{args.region}" if args.region
             else f"store:{args.store}")
    ring = _ring(args)
    stores, _ = _stores_and_sessions(db)
    try:
        with db.transaction() as tx:
            changed = flags.set_flag(tx, time.time, _actor(), scope, name, value == "on", ring,
                                     region_of=stores)
    except ValueError as err:
        raise UsageError(str(err)) from err
    print(f"{name} {value} for {scope}: {len(changed)} store(s) get a new signed flags "
          "document (published by the hub worker)")
    return 0


def _store(args: argparse.Namespace):
    return open_db(args.db, create=True)


# bundles and rollouts --------------------------------------------------------------------

def _stores_and_sessions(db) -> tuple[dict[str, str], dict[str, int]]:
    from hub.control import known_stores, store_sessions

    with db.read() as tx:
        return known_stores(tx), store_sessions(tx)


def cmd_bundle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hub.domains.rollout import rules as rollout

    db = _store(args)
    if args.bundle_command == "list":
        with db.read() as tx:
            rows = rollout.list_bundles(tx)
        if args.json:
            print_json(rows)
        else:
            print(table(("SHA256", "KIND", "NAME", "VERSION", "SIZE"),
                               [(r["sha256"][:16], r["kind"], r["name"], r["version"], r["size"])
                                for r in rows]) if rows else "no bundles")
        return 0
    ring = _ring(args)
    if args.bundle_command == "assign":
        stores, _ = _stores_and_sessions(db)
        if args.store not in stores:
            raise UsageError(f"unknown store {args.store!r} (it has not reported yet)")
        with db.transaction() as tx:
            b = rollout.get_bundle(tx, args.bundle)
            version = rollout.assign(tx, time.time, ring, args.store, stores[args.store],
                                     b["kind"], b["sha256"], rollback=args.rollback,
                                     urgent=args.urgent)
            from hub.domains import audit

            audit.record(tx, time.time, _actor(), "bundles.assign", f"bundle:{b['sha256']}",
                         {"store": args.store, "region": stores[args.store],
                          "rollback": args.rollback})
        print(f"{args.store}: desired state v{version} names {b['kind']} bundle "
              f"v{b['version']} ({b['sha256'][:16]}){' as a rollback' if args.rollback else ''}")
        return 0
    if bool(args.model) == bool(args.config):
        raise UsageError("give --model FILE.onnx or --config FILE.toml")
    try:
        if args.model:
            model = Path(args.model)
            stem = model.name[:-5] if model.name.endswith(".onnx") else model.name
            card = model.with_name(stem + ".card.json")
            files = {model.name: model.read_bytes(), card.name: card.read_bytes()}
            kind, name = "model", stem
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib

            text = Path(args.config).read_bytes()
            tomllib.loads(text.decode("utf-8"))
            files, kind, name = {"agent.toml": text}, "config", Path(args.config).stem
    except OSError as err:
        raise UsageError(f"cannot read {err.filename}: {err.strerror}") from err
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"--config: not valid TOML: {err}") from err
    try:
        with db.transaction() as tx:
            row = rollout.create_bundle(tx, time.time, _actor(), kind=kind,
                                        name=name[:64] or kind, files=files, ring=ring,
                                        version=args.version,
                                        expires_s=parse_duration(args.expires),
                                        min_agent=args.min_agent)
    except ValueError as err:
        raise UsageError(str(err)) from err
    if args.json:
        print_json(row)
    else:
        print(f"{'existing' if row['existing'] else 'new'} {row['kind']} bundle "
              f"v{row['version']} {row['sha256']} ({row['size']} bytes)")
    return 0


def _gates(items) -> Any:
    """--gate NAME=VALUE over the defaults of hub.domains.rollout.rules.Gates."""
    import dataclasses

    from hub.domains.rollout.rules import Gates

    types = {f.name: f.type for f in dataclasses.fields(Gates)}
    values: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in types:
            raise UsageError(f"--gate: expected one of {', '.join(types)} =VALUE, "
                             f"got {item[:60]!r}")
        try:
            number = float(value) if "float" in str(types[name]) else int(value)
        except ValueError as err:
            raise UsageError(f"--gate {name}: not a number: {value[:30]!r}") from err
        if number < 0:
            raise UsageError(f"--gate {name}: must be >= 0")
        values[name] = number
    return Gates(**values)


def cmd_rollout(args: argparse.Namespace) -> int:
    from hub.domains.rollout import rules as rollout

    db = _store(args)
    if args.rollout_command == "status":
        with db.read() as tx:
            rows = [rollout.status(tx, args.id)] if args.id else rollout.list_rollouts(tx)
        if args.json:
            print_json(rows if not args.id else rows[0])
            return 0
        for r in rows:
            stage = r["stages"][r["stage"]]["name"] if r["stages"] else "-"
            print(f"rollout {r['id']}: {r['kind']} v{r['version']} {r['state']} at stage "
                  f"{stage} ({r['stage'] + 1}/{len(r['stages'])})"
                  + (f": {escape(r['reason'])}" if r["reason"] else ""))
            done = sum(s["applied"] for s in r["stores"])
            print(f"  {len(r['stores'])} store(s) assigned, {done} applied, "
                  f"{sum(1 for s in r['stores'] if s['failed'])} failed")
            if r["last_gate"]:
                g = r["last_gate"]
                print(f"  last gate: {g.get('verdict')} ({g.get('gate', 'all gates')}): "
                      f"rate updated {g.get('rate_updated')}, not updated "
                      f"{g.get('rate_baseline')} alerts per device-day")
        if not rows:
            print("no rollouts")
        return 0
    ring = _ring(args)
    stores, sessions = _stores_and_sessions(db)
    from hub.domains.rollout.rules import RolloutError

    try:
        with db.transaction() as tx:
            if args.rollout_command == "start":
                row = rollout.start(tx, time.time, _actor(), ring, bundle=args.bundle,
                                    stages=args.stages, stores=stores,
                                    soak_s=parse_duration(args.soak, "--soak"),
                                    urgent=args.urgent, approvals=tuple(args.approval or ()),
                                    sessions=sessions, gates=_gates(args.gate or ()))
            else:
                row = rollout.control(tx, time.time, _actor(), ring, args.id,
                                      args.rollout_command, stores, sessions)
    except RolloutError as err:
        raise UsageError(str(err)) from err
    if args.json:
        print_json(row)
    else:
        print(f"rollout {row['id']}: {row['state']}, stage "
              f"{row['stages'][row['stage']]['name']}")
    return 0


# edge-hub store ---------------------------------------------------------------------------

def store_control_text(detail: dict[str, Any]) -> str:
    f = detail.get("flags")
    if not f:
        line = "flags: defaults (all on); no flags document sent"
    else:
        off = sorted(k for k, v in f["flags"].items() if v is False)
        state = ("applied" if f["applied_version"] == f["version"] else
                 f"store has v{f['applied_version']}" if f["applied_version"] else
                 "not yet applied" if f["published"] else "not yet published")
        line = (f"flags v{f['version']} ({state}): "
                + (", ".join(f"{k}=OFF" for k in off) if off else "all on"))
    for kind, b in sorted((detail.get("bundles") or {}).items()):
        line += (f"\n{kind} bundle: v{b['version']} {b['status']}"
                 + (f" ({escape(b['reason'])})" if b.get("reason") else ""))
    rejects = detail.get("command_rejects") or {}
    if rejects:
        line += "\ncommands refused by the store: " + ", ".join(
            f"{escape(k)} {v}" for k, v in rejects.items())
    return line


# Parser -----------------------------------------------------------------------------------

def register(sub, add_db) -> None:
    common = add_db
    from hub.keys import default_dir

    def keyopts(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dir", default=default_dir(),
                       help="key folder (default $EDGE_HUB_KEYS or %(default)s)")
        p.add_argument("--passphrase-file",
                       help="file whose first line is the key's passphrase "
                            "(default $EDGE_HUB_KEY_PASSPHRASE; none: not encrypted)")

    p = sub.add_parser("keys", help="the hub's Ed25519 signing keys: init, rotate, show")
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    for name, text in (("init", "create the hub's first signing key (never overwrites)"),
                       ("rotate", "make a new key, endorsed by the current one"),
                       ("show", "list keys and the [trust] block agents pin"),
                       ("retire", "stop listing an old key as trusted")):
        q = ks.add_parser(name, help=text)
        keyopts(q)
        if name == "show":
            q.add_argument("--json", action="store_true")
        if name == "retire":
            q.add_argument("kid")
        q.set_defaults(func=cmd_keys)

    p = sub.add_parser("cmd", help="send a signed command to a store; `cmd status ID`",
                       description="edge-hub cmd STORE [DEVICE] ACTION [--arg K=V ...] | "
                                   "cmd status ID | cmd approve ID | cmd list. Actions: repoll, "
                                   "test_print, recover, reset and restart_agent (these two "
                                   "wait for an approval), reload_config, diagnostics.")
    p.add_argument("words", nargs="+",
                   metavar="STORE [DEVICE] ACTION | status ID | approve ID | list")
    p.add_argument("--arg", action="append", metavar="K=V", help="an argument of the action")
    p.add_argument("--expires", default="10m", help="lifetime (90s, 10m, 2h, 1d)")
    p.add_argument("--region", help="the store's region, when the hub has not seen it yet")
    p.add_argument("--wait", type=float, default=0.0,
                   help="wait up to this many seconds for the result")
    p.add_argument("--store", help="list: only this store")
    p.add_argument("--limit", type=int, default=50, help="list: rows")
    keyopts(p)
    common(p)
    p.set_defaults(func=cmd_cmd)

    p = sub.add_parser("flags", help="feature flags and kill switches (scoring, tickets, "
                                     "remote_actions)")
    fs = p.add_subparsers(dest="flags_command", metavar="ACTION", required=True)
    q = fs.add_parser("set", help="NAME=on|off for a store, a region or the chain")
    q.add_argument("setting", metavar="NAME=on|off")
    where = q.add_mutually_exclusive_group(required=True)
    where.add_argument("--store")
    where.add_argument("--region")
    where.add_argument("--chain", action="store_true")
    keyopts(q)
    common(q, json_flag=False)
    q.set_defaults(func=cmd_flags)
    q = fs.add_parser("show", help="flag settings by scope")
    common(q)
    q.set_defaults(func=cmd_flags)

    p = sub.add_parser("bundle", help="signed, content-addressed config and model bundles")
    bs = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    q = bs.add_parser("create", help="--model FILE.onnx (its card beside it) | --config FILE.toml")
    q.add_argument("--model")
    q.add_argument("--config")
    q.add_argument("--version", type=int, help="default: the kind's highest + 1")
    q.add_argument("--expires", default="365d")
    q.add_argument("--min-agent", default="0.0.0", help="lowest agent version, x.y.z")
    keyopts(q)
    common(q)
    q.set_defaults(func=cmd_bundle)
    q = bs.add_parser("list", help="bundles")
    common(q)
    q.set_defaults(func=cmd_bundle)
    q = bs.add_parser("assign", help="put a bundle in one store's desired state (no rollout)")
    q.add_argument("store")
    q.add_argument("bundle", help="sha256 or a prefix of it (8+ hex digits)")
    q.add_argument("--rollback", action="store_true", help="sign it as a rollback (lower version)")
    q.add_argument("--urgent", action="store_true", help="apply during trading hours too")
    keyopts(q)
    common(q, json_flag=False)
    q.set_defaults(func=cmd_bundle)

    p = sub.add_parser("rollout", help="staged rollouts with health gates and automatic abort")
    rs = p.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    q = rs.add_parser("start", help='BUNDLE --stages "pilot=s1,s2; north=region:north; chain"')
    q.add_argument("bundle")
    q.add_argument("--stages", required=True)
    q.add_argument("--soak", default="24h", help="how long each stage soaks before its gates")
    q.add_argument("--urgent", action="store_true", help="apply during trading hours too")
    q.add_argument("--approval", action="append", metavar="STAGE",
                   help="a stage that waits for an approval before it begins")
    q.add_argument("--gate", action="append", metavar="NAME=VALUE",
                   help="a gate threshold (docs/rollout.md): max_apply_failures, "
                        "max_restarts_per_store, max_alert_ratio, min_excess_alerts, "
                        "min_device_days, inconclusive_soaks")
    keyopts(q)
    common(q)
    q.set_defaults(func=cmd_rollout)
    q = rs.add_parser("status", help="one rollout or all")
    q.add_argument("id", nargs="?")
    common(q)
    q.set_defaults(func=cmd_rollout)
    for name in ("pause", "resume", "abort", "approve"):
        q = rs.add_parser(name, help=f"{name} a rollout" + (" (rolls back)" if name == "abort"
                                                            else ""))
        q.add_argument("id")
        keyopts(q)
        common(q)
        q.set_defaults(func=cmd_rollout)
