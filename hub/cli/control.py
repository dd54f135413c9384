"""`edge-hub keys|cmd|flags|bundle|rollout`: the hub's signing keys, signed commands to stores,
feature flags, bundles and staged rollouts.

    edge-hub keys init|rotate|show|retire [--dir DIR] [--passphrase-file F]
    edge-hub cmd STORE [DEVICE] ACTION [--arg K=V ...] [--expires 10m] [--wait S] [--json]
    edge-hub cmd status ID [--wait S] [--json] | cmd approve ID [--wait S] [--json]
    edge-hub cmd list [--store S] [--limit N] [--json]
    edge-hub flags set NAME=on|off (--store S | --region R | --chain) [--json]
    edge-hub flags show [--json]
    edge-hub bundle create|assign (on the hub host) | bundle list [--json]
    edge-hub rollout start|status|pause|resume|abort|approve ... [--json]

cmd, flags, bundle list and rollout go through the hub's API when a hub URL is known (--hub,
$EDGE_HUB_URL, the credentials file: hub/cli/local.py), as the token's user: the API decides
what the user's role and scope allow (403 is one line and exit 1), signs with the hub's key
ring and audits the user. With --db (or no hub URL) they work on the database as a local
actor, signing with the key ring of --dir; `Local` does what each route does, so --json
prints the same either way. The hub worker (`edge-hub serve`) publishes what they queue and
records the results. bundle create and assign read files and sign on the hub host (--db).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import time
from typing import Any, Iterator

from hub.cli.common import UsageError, age, ago, escape, open_db, print_json, table
from hub.errors import Invalid


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


# Where the work happens: the API as the token's user, or the database as a local actor ----

class Remote:
    """The control plane through the hub's API, as the token's user: the API enforces the
    user's role and scope, signs with the hub's key ring and audits the user as the actor."""

    poll_max = 0.5   # `cmd --wait` asks at most every 0.5 s once the first second has gone

    def __init__(self, client):
        self.client = client

    def issue(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.client.post("/v1/commands", spec)

    def command(self, cmd_id: str) -> dict[str, Any]:
        return self.client.get(f"/v1/commands/{cmd_id}")

    def approve(self, cmd_id: str) -> dict[str, Any]:
        return self.client.post(f"/v1/commands/{cmd_id}/approve")

    def commands(self, store: str | None, limit: int) -> list[dict[str, Any]]:
        return self.client.get("/v1/commands", store=store, limit=limit)

    def flags(self) -> dict[str, Any]:
        return self.client.get("/v1/flags")

    def set_flag(self, scope: str, name: str, value: bool) -> dict[str, Any]:
        return self.client.post("/v1/flags", {"name": name, "value": value, "scope": scope})

    def bundles(self) -> list[dict[str, Any]]:
        return self.client.get("/v1/bundles")

    def rollouts(self) -> list[dict[str, Any]]:
        return self.client.get("/v1/rollouts")

    def rollout(self, rid: str) -> dict[str, Any]:
        return self.client.get(f"/v1/rollouts/{rid}")

    def start(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self.client.post("/v1/rollouts", spec)

    def control(self, rid: str, action: str) -> dict[str, Any]:
        return self.client.post(f"/v1/rollouts/{rid}/{action}")


class Local:
    """The same on the hub database (--db, the config's, $EDGE_HUB_DB), as a local actor
    ($EDGE_HUB_ACTOR, else $USER), signing with the key ring of --dir. Each method does what
    its API route does, with the same checks, answers and refusals."""

    poll_max = 0.05   # a read of the local database: `cmd --wait` asks every 50 ms

    def __init__(self, args: argparse.Namespace):
        from hub.cli import local

        self.args = args
        self.db = local.open_db(args, create=True)
        self.actor = _actor()
        self.source = local.source()

    def ring(self):
        return _ring(self.args)

    def issue(self, spec: dict[str, Any]) -> dict[str, Any]:
        from edge_protocol.commands import CommandError
        from hub.control import command_region, request_approval
        from hub.domains.commands import rules

        ring = self.ring()
        try:
            with self.db.transaction() as tx:
                region = command_region(tx, spec["store"], spec.get("region"))
                return rules.issue(tx, time.time, self.actor, store=spec["store"],
                                   region=region, device=spec.get("device"),
                                   action=spec["action"], args=spec.get("args", {}),
                                   expires_s=spec["expires_s"], ring=ring,
                                   approvals=request_approval, source=self.source)
        except CommandError as err:
            raise Invalid(f"{err.code}: {err.detail}") from err

    def command(self, cmd_id: str) -> dict[str, Any]:
        from hub.domains.commands import rules

        with self.db.read() as tx:
            return rules.get(tx, cmd_id)

    def approve(self, cmd_id: str) -> dict[str, Any]:
        from hub.control import approve_command

        self.command(cmd_id)  # an unknown id says so before the key ring is opened
        return approve_command(self.db, time.time, self.actor, cmd_id, self.ring())

    def commands(self, store: str | None, limit: int) -> list[dict[str, Any]]:
        from hub.domains.commands import rules

        with self.db.read() as tx:
            return rules.list_commands(tx, store=store, limit=limit)

    def flags(self) -> dict[str, Any]:
        from hub.domains.flags import rules as flags

        with self.db.read() as tx:
            return flags.overview(tx)

    def set_flag(self, scope: str, name: str, value: bool) -> dict[str, Any]:
        from hub.control import known_stores
        from hub.domains.flags import rules as flags

        ring = self.ring()
        try:
            with self.db.transaction() as tx:
                changed = flags.set_flag(tx, time.time, self.actor, scope, name, value, ring,
                                         region_of=known_stores(tx), source=self.source)
        except ValueError as err:
            raise Invalid(str(err)) from err
        return {"name": name, "value": value, "scope": scope, "changed": changed}

    def bundles(self) -> list[dict[str, Any]]:
        from hub.domains.rollout import rules as rollout

        with self.db.read() as tx:
            return rollout.list_bundles(tx)

    def rollouts(self) -> list[dict[str, Any]]:
        from hub.domains.rollout import rules as rollout

        with self.db.read() as tx:
            return rollout.list_rollouts(tx)

    def rollout(self, rid: str) -> dict[str, Any]:
        from hub.domains.rollout import rules as rollout

        with self.db.read() as tx:
            return rollout.status(tx, rid)

    def start(self, spec: dict[str, Any]) -> dict[str, Any]:
        from hub.control import known_stores, rollout_refusal, store_sessions
        from hub.domains.rollout import rules as rollout

        ring = self.ring()
        try:
            with self.db.transaction() as tx:
                return rollout.start(tx, time.time, self.actor, ring, bundle=spec["bundle"],
                                     stages=spec["stages"], stores=known_stores(tx),
                                     soak_s=float(spec["soak_s"]), urgent=spec["urgent"],
                                     approvals=tuple(spec["approval"]),
                                     gates=rollout.Gates(**spec["gates"]),
                                     sessions=store_sessions(tx))
        except rollout.RolloutError as err:
            raise rollout_refusal(err, starting=True) from err

    def control(self, rid: str, action: str) -> dict[str, Any]:
        from hub.control import known_stores, rollout_refusal, store_sessions
        from hub.domains.rollout import rules as rollout

        self.rollout(rid)  # an unknown id says so before the key ring is opened
        # Pausing and resuming sign nothing: they work without the key ring (as in the API).
        ring = self.ring() if action in ("abort", "approve") else None
        try:
            with self.db.transaction() as tx:
                return rollout.control(tx, time.time, self.actor, ring, rid, action,
                                       known_stores(tx), store_sessions(tx))
        except rollout.RolloutError as err:
            raise rollout_refusal(err) from err


@contextlib.contextmanager
def backend(args: argparse.Namespace) -> Iterator[Remote | Local]:
    """Remote when a hub URL is known and --db is not given (hub/cli/local.py), else Local
    (its database closed at the end)."""
    from hub.cli import local

    client = local.remote(args)  # refuses --hub with --db
    if client:
        yield Remote(client)
        return
    work = Local(args)
    try:
        yield work
    finally:
        work.db.close()


def _actor():
    """An administrator on the hub host working through --db (the API passes its user)."""
    from hub.config import check_id
    from hub.domains.access import local_actor

    name = os.environ.get("EDGE_HUB_ACTOR")
    if name and check_id(name):
        raise UsageError(f"$EDGE_HUB_ACTOR: not a usable name: {escape(name[:40])!r}")
    if not name:
        from hub.cli.local import os_user

        name = os_user() if check_id(os_user()) is None else "unknown"
    return local_actor(name)


# Arguments: checked here, so a mistake is one line (exit 2) in both modes ----------------

_DURATION = re.compile(r"(\d{1,7})([smhd]?)\Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_SHA_PREFIX = re.compile(r"[0-9a-f]{8,64}\Z")


def parse_duration(text: str, option: str = "--expires") -> float:
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"{option}: expected a duration such as 90s, 10m, 2h or 1d, "
                         f"got {escape(text[:40])!r}")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def parse_arg(text: str) -> tuple[str, Any]:
    """K=V: true/false become booleans, digits an integer, anything else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise UsageError(f"--arg: expected K=V, got {escape(text[:60])!r}")
    if value in ("true", "false"):
        return key, value == "true"
    if re.fullmatch(r"-?\d{1,18}", value):
        return key, int(value)
    return key, value


def _id(text: str, what: str) -> str:
    """A store, device or region name as the hub takes it (hub.config.check_id)."""
    from hub.config import check_id

    why = check_id(text)
    if why:
        raise UsageError(f"{what} {escape(text[:40])!r}: {why}")
    return text


def _uuid(text: str, what: str) -> str:
    if not _UUID.match(text):
        raise UsageError(f"{what}: expected a UUID such as 0190c0de-7a1b-4c2d-9e3f-a1b2c3d4e5f6,"
                         f" got {escape(text[:40])!r}")
    return text


def _number(text: str, option: str, lo: float, hi: float, integer: bool = False) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:  # NaN fails both comparisons
        raise UsageError(f"{option}: expected {'an integer' if integer else 'a number'} "
                         f"{lo:g}-{hi:g}, got {escape(text[:40])!r}")
    return value


# Tables that list ids are not shrunk to the terminal (an id cut short cannot be pasted
# into the next command); the cells that may be long are cut here instead.
WHOLE_IDS = 1 << 16


def _cut(text: str | None, n: int) -> str | None:
    return text if text is None or len(text) <= n else text[:n - 1] + "…"


def _exit(row: dict[str, Any]) -> int:
    """1 when the command did not do its work (failed, refused by the store, expired)."""
    return 1 if row["status"] in ("failed", "rejected", "expired") else 0


# cmd --------------------------------------------------------------------------------------

def cmd_cmd(args: argparse.Namespace) -> int:
    words = list(args.words)
    wait = _number(args.wait, "--wait", 0, 86400)
    if words[0] == "list":
        if len(words) != 1:
            raise UsageError("usage: edge-hub cmd list [--store S] [--limit N]")
        limit = int(_number(args.limit, "--limit", 1, 1000, integer=True))
        if args.store:
            _id(args.store, "--store")
        with backend(args) as work:
            rows = work.commands(args.store, limit)
        if args.json:
            print_json(rows)
        elif not rows:
            print("no commands" + (f" for {escape(args.store)}" if args.store else ""))
        else:
            print(table(("ID", "STORE", "DEVICE", "ACTION", "SEQ", "STATUS", "BY", "ISSUED"),
                        [(r["id"], r["store"], r["device"], r["action"], r["seq"],
                          _cut(r["status"] + (f" ({r['reason']})" if r["reason"] else ""), 40),
                          _cut(r["actor"], 24), ago(r["created"])) for r in rows],
                        width=WHOLE_IDS))
        return 0
    if words[0] in ("status", "approve"):
        if len(words) != 2:
            raise UsageError(f"usage: edge-hub cmd {words[0]} ID")
        cmd_id = _uuid(words[1], "command id")
        with backend(args) as work:
            row = work.command(cmd_id) if words[0] == "status" else work.approve(cmd_id)
            row = _wait(work, row, wait)
        _show(row, args.json)
        return _exit(row)
    if len(words) not in (2, 3):
        raise UsageError("usage: edge-hub cmd STORE [DEVICE] ACTION [--arg K=V ...] | "
                         "status ID | approve ID | list")
    for what, name in zip(("STORE", "DEVICE"), words[:-1]):
        _id(name, what)
    spec: dict[str, Any] = {"store": words[0], "action": words[-1],
                            "args": dict(parse_arg(a) for a in args.arg or ()),
                            "expires_s": parse_duration(args.expires)}
    if len(words) == 3:
        spec["device"] = words[1]
    if args.region:
        spec["region"] = _id(args.region, "--region")
    with backend(args) as work:
        row = _wait(work, work.issue(spec), wait)
    _show(row, args.json)
    return _exit(row)


def _wait(work: Remote | Local, row: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Ask for the command until it is finished (or held for an approval), at most `seconds`:
    every 50 ms on the database; through the API every 50 ms at first, then less and less
    often (x1.5 each time, at most every 0.5 s: two requests a second against the API's
    limits.rate_per_s), and after a 429 only once its Retry-After has passed."""
    from hub.cli.client import RateLimited
    from hub.domains.commands.rules import OPEN

    deadline = time.monotonic() + seconds
    pause = 0.05
    while row["status"] in OPEN and row["status"] != "awaiting_approval":
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(pause, left))
        pause = min(pause * 1.5, max(0.05, work.poll_max))
        try:
            row = work.command(row["id"])
        except RateLimited as err:
            pause = max(pause, err.retry_after)
    return row


def _show(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(row)
        return
    e = escape
    print(f"command {row['id']}: {e(row['action'])} on {e(row['store'])}"
          + (f"/{e(row['device'])}" if row["device"] else "")
          + (f" (seq {row['seq']})" if row["seq"] is not None else "")
          + f": {row['status']}" + (f" ({e(row['reason'])})" if row.get("reason") else ""))
    when = f"  issued by {e(row['actor'])} {ago(row['created'])}"
    if row.get("approved_by"):
        when += f", approved by {e(row['approved_by'])}"
    if row["status"] in ("queued", "sending", "delivered") and row.get("expires"):
        when += f"; expires in {age(max(0.0, row['expires'] - time.time()))}"
    print(when)
    if row.get("detail"):
        print(f"  {e(row['detail'])}")
    for key, value in (row.get("output") or {}).items():
        print(f"  {e(str(key))}: {e(str(value))[:200]}")
    if row["status"] == "awaiting_approval":
        ref = row.get("approval")
        print("  a high-impact action: it waits for someone else's approval ("
              + (f"`edge-hub approvals approve {ref}` or " if ref else "")
              + f"`edge-hub cmd approve {row['id']}`)")


# flags ------------------------------------------------------------------------------------

def cmd_flags(args: argparse.Namespace) -> int:
    if args.flags_command == "show":
        with backend(args) as work:
            doc = work.flags()
        if args.json:
            print_json(doc)
        elif not doc["settings"]:
            print("no flags set: every flag is on (the default)")
        else:
            print(table(("SCOPE", "NAME", "VALUE", "SET BY", "AT"),
                        [(s["scope"], s["name"], "on" if s["value"] else "OFF", s["actor"],
                          ago(s["at"])) for s in doc["settings"]]))
            print(f"\n{doc['applied']} of {doc['stores']} store(s) applied their latest "
                  "flags document")
        return 0
    name, sep, value = args.setting.partition("=")
    if not sep or value not in ("on", "off"):
        raise UsageError(f"expected NAME=on|off, got {escape(args.setting[:60])!r}")
    scope = ("chain" if args.chain else f"region:{args.region}" if args.region
             else f"store:{args.store}")
    with backend(args) as work:
        out = work.set_flag(scope, name, value == "on")
    if args.json:
        print_json(out)
    else:
        print(f"{escape(out['name'])} {value} for {escape(out['scope'])}: "
              f"{len(out['changed'])} store(s) get a new signed flags document (published by "
              "the hub worker)")
    return 0


# bundles and rollouts --------------------------------------------------------------------

def _store(args: argparse.Namespace):
    return open_db(args.db, create=True)


def _stores_and_sessions(db) -> tuple[dict[str, str], dict[str, int]]:
    from hub.control import known_stores, store_sessions

    with db.read() as tx:
        return known_stores(tx), store_sessions(tx)


def cmd_bundle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hub.domains.rollout import rules as rollout

    if args.bundle_command == "list":
        with backend(args) as work:
            rows = work.bundles()
        if args.json:
            print_json(rows)
        else:
            print(table(("SHA256", "KIND", "NAME", "VERSION", "SIZE", "CREATED"),
                        [(r["sha256"][:16], r["kind"], r["name"], r["version"], r["size"],
                          ago(r["created"])) for r in rows]) if rows else "no bundles")
        return 0
    # create and assign: on the hub host, with the key ring (the API does not take files).
    db = _store(args)
    ring = _ring(args)
    if args.bundle_command == "assign":
        stores, _ = _stores_and_sessions(db)
        if args.store not in stores:
            raise UsageError(f"unknown store {escape(args.store[:64])!r} (it has not reported "
                             "yet)")
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


def _gates(items) -> dict[str, float]:
    """--gate NAME=VALUE over the defaults of hub.domains.rollout.rules.Gates: {name: value},
    as the API's `gates` takes them."""
    import dataclasses

    from hub.domains.rollout.rules import Gates

    types = {f.name: f.type for f in dataclasses.fields(Gates)}
    values: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in types:
            raise UsageError(f"--gate: expected one of {', '.join(types)} =VALUE, "
                             f"got {escape(item[:60])!r}")
        try:
            number = float(value) if "float" in str(types[name]) else int(value)
        except ValueError as err:
            raise UsageError(f"--gate {name}: not a number: {escape(value[:30])!r}") from err
        if not number >= 0 or number == float("inf"):
            raise UsageError(f"--gate {name}: must be a number >= 0")
        values[name] = number
    return values


def cmd_rollout(args: argparse.Namespace) -> int:
    action = args.rollout_command
    if action == "status":
        rid = _uuid(args.id, "rollout id") if args.id else None
        with backend(args) as work:
            r = work.rollout(rid) if rid else None
            rows = [] if rid else work.rollouts()
        if r is not None:
            if args.json:
                print_json(r)
            else:
                print(rollout_text(r, stores=True))
            return 0
        if args.json:
            print_json(rows)
        elif not rows:
            print("no rollouts")
        else:
            print(table(("ID", "BUNDLE", "STATE", "STAGE", "APPLIED", "FAILED", "BY",
                         "STARTED"),
                        [(r["id"], f"{r['kind']} v{r['version']}", r["state"],
                          _cut(_stage(r), 30),
                          f"{sum(1 for s in r['stores'] if s['applied'])}/{len(r['stores'])}",
                          sum(1 for s in r["stores"] if s["failed"]), _cut(r["actor"], 24),
                          ago(r["created"])) for r in rows], width=WHOLE_IDS))
            print("\n`edge-hub rollout status ID` shows one with its stages, gate and stores")
        return 0
    if action == "start":
        if not _SHA_PREFIX.match(args.bundle):
            raise UsageError("BUNDLE: expected 8 to 64 hexadecimal digits of its sha256 "
                             f"(edge-hub bundle list), got {escape(args.bundle[:70])!r}")
        if not args.stages.strip() or len(args.stages) > 4096:
            raise UsageError('--stages: expected "NAME=store,store; NAME=region:R; chain"')
        spec = {"bundle": args.bundle, "stages": args.stages,
                "soak_s": parse_duration(args.soak, "--soak"), "urgent": args.urgent,
                "approval": list(args.approval or ()), "gates": _gates(args.gate or ())}
        with backend(args) as work:
            r = work.start(spec)
    else:
        rid = _uuid(args.id, "rollout id")
        with backend(args) as work:
            r = work.control(rid, action)
    if args.json:
        print_json(r)
    else:
        print(rollout_text(r))
    return 0


def _stage(r: dict[str, Any]) -> str:
    if not r["stages"]:
        return "-"
    return f"{r['stages'][r['stage']]['name']} ({r['stage'] + 1}/{len(r['stages'])})"


def rollout_text(r: dict[str, Any], stores: bool = False) -> str:
    """A rollout for people: its state and stage, its stages, its stores' progress, the last
    gate's verdict; with `stores`, a row per store (the first 50)."""
    e = escape
    lines = [f"rollout {r['id']}: {e(r['kind'])} v{r['version']} {r['state']} at stage "
             f"{e(_stage(r))}" + (f": {e(r['reason'])}" if r["reason"] else "")]
    lines.append(f"  bundle {r['sha256'][:16]}, soak {age(r['soak_s'])}"
                 + (", urgent" if r["urgent"] else "")
                 + f"; started by {e(r['actor'])} {ago(r['created'])}")
    lines.append("  stages: " + " -> ".join(
        f"{e(s['name'])} ({len(s['stores'])} store(s)"
        + (", waits for approval" if s.get("approval") else "") + ")" for s in r["stages"]))
    applied = sum(1 for s in r["stores"] if s["applied"])
    failed = sum(1 for s in r["stores"] if s["failed"])
    back = sum(1 for s in r["stores"] if s["rolled_back"])
    lines.append(f"  {len(r['stores'])} store(s) assigned, {applied} applied, {failed} failed"
                 + (f", {back} rolled back" if back else ""))
    g = r.get("last_gate")
    if g:
        lines.append(f"  last gate: {e(g.get('verdict'))} ({e(g.get('gate', 'all gates'))}): "
                     f"rate updated {g.get('rate_updated')}, not updated "
                     f"{g.get('rate_baseline')} alerts per device-day")
        sc = g.get("scoring_errors")
        if isinstance(sc, dict):
            lines.append(f"  scoring errors: {sc.get('updated')} on updated stores "
                         f"({sc.get('rate_updated')} per device-day, limit {sc.get('limit')}), "
                         f"{sc.get('baseline')} on the rest")
    if stores and r["stores"]:
        names = [s["name"] for s in r["stages"]]
        rows = [(s["store"], names[s["stage"]] if 0 <= s["stage"] < len(names) else s["stage"],
                 "yes" if s["applied"] else "no", s["failed"] or None,
                 "yes" if s["rolled_back"] else "no") for s in r["stores"][:50]]
        lines.append("")
        lines.append(table(("STORE", "STAGE", "APPLIED", "FAILED", "ROLLED BACK"), rows))
        if len(r["stores"]) > 50:
            lines.append(f"... and {len(r['stores']) - 50} more (--json lists every store)")
    return "\n".join(lines)


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
    from hub.cli import local
    from hub.keys import default_dir

    def keyopts(p: argparse.ArgumentParser, remote: bool = False) -> None:
        also = " With a hub URL the API server signs with its own key ring." if remote else ""
        p.add_argument("--dir", default=default_dir(),
                       help="key folder, for --db (default $EDGE_HUB_KEYS or %(default)s)."
                            + also)
        p.add_argument("--passphrase-file",
                       help="file whose first line is the key's passphrase "
                            "(default $EDGE_HUB_KEY_PASSPHRASE; none: not encrypted)")

    def either(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
        """Through the API (--hub, $EDGE_HUB_URL, the credentials file) or on --db."""
        if json_flag:
            p.add_argument("--json", action="store_true",
                           help="print JSON for scripts (the same through the API or --db)")
        local.add_db_args(p)

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

    p = sub.add_parser(
        "cmd", help="send a signed command to a store; `cmd status ID`, `cmd list`",
        description="edge-hub cmd STORE [DEVICE] ACTION [--arg K=V ...] | cmd status ID | "
                    "cmd approve ID | cmd list. Actions: repoll, test_print, recover, "
                    "reset and restart_agent (these two wait for someone else's approval), "
                    "reload_config, diagnostics. Through the hub's API when a hub URL is "
                    "known (--hub, $EDGE_HUB_URL, the credentials file), as the token's user; "
                    "else on the database of --db as a local actor ($EDGE_HUB_ACTOR, else "
                    "$USER), signed with the key ring of --dir. Exit 0 done or still open, "
                    "1 failed, refused by the store, expired, or refused by the hub (401, "
                    "403, 404, 409), 2 a mistake in the arguments.")
    p.add_argument("words", nargs="+",
                   metavar="STORE [DEVICE] ACTION | status ID | approve ID | list")
    p.add_argument("--arg", action="append", metavar="K=V", help="an argument of the action")
    p.add_argument("--expires", default="10m", help="lifetime (90s, 10m, 2h, 1d; at most 7d)")
    p.add_argument("--region", help="the store's region, only when the hub has not seen the "
                                    "store yet")
    p.add_argument("--wait", default="0", metavar="S",
                   help="wait up to S seconds for the result (asked every 50 ms on --db; "
                        "through the API every 50 ms at first, then at most every 0.5 s)")
    p.add_argument("--store", help="list: only this store")
    p.add_argument("--limit", default="50", metavar="N",
                   help="list: at most this many (1-1000, default 50)")
    keyopts(p, remote=True)
    either(p)
    p.set_defaults(func=cmd_cmd)

    p = sub.add_parser("flags", help="feature flags and kill switches (scoring, tickets, "
                                     "remote_actions)",
                       description="Through the hub's API when a hub URL is known, as the "
                                   "token's user; else on the database of --db.")
    fs = p.add_subparsers(dest="flags_command", metavar="ACTION", required=True)
    q = fs.add_parser("set", help="NAME=on|off for a store, a region or the chain")
    q.add_argument("setting", metavar="NAME=on|off")
    where = q.add_mutually_exclusive_group(required=True)
    where.add_argument("--store")
    where.add_argument("--region")
    where.add_argument("--chain", action="store_true")
    keyopts(q, remote=True)
    either(q)
    q.set_defaults(func=cmd_flags)
    q = fs.add_parser("show", help="flag settings by scope")
    either(q)
    q.set_defaults(func=cmd_flags)

    p = sub.add_parser("bundle", help="signed, content-addressed config and model bundles")
    bs = p.add_subparsers(dest="bundle_command", metavar="ACTION", required=True)
    q = bs.add_parser("create", help="--model FILE.onnx (its card beside it) | --config "
                                     "FILE.toml (on the hub host: --db and the key ring)")
    q.add_argument("--model")
    q.add_argument("--config")
    q.add_argument("--version", type=int, help="default: the kind's highest + 1")
    q.add_argument("--expires", default="365d")
    q.add_argument("--min-agent", default="0.0.0", help="lowest agent version, x.y.z")
    keyopts(q)
    add_db(q)
    q.set_defaults(func=cmd_bundle)
    q = bs.add_parser("list", help="bundles (through the API when a hub URL is known)")
    either(q)
    q.set_defaults(func=cmd_bundle)
    q = bs.add_parser("assign", help="put a bundle in one store's desired state (no rollout; "
                                     "on the hub host)")
    q.add_argument("store")
    q.add_argument("bundle", help="sha256 or a prefix of it (8+ hex digits)")
    q.add_argument("--rollback", action="store_true", help="sign it as a rollback (lower version)")
    q.add_argument("--urgent", action="store_true", help="apply during trading hours too")
    keyopts(q)
    add_db(q, json_flag=False)
    q.set_defaults(func=cmd_bundle)

    p = sub.add_parser("rollout", help="staged rollouts with health gates and automatic abort",
                       description="Through the hub's API when a hub URL is known, as the "
                                   "token's user; else on the database of --db.")
    rs = p.add_subparsers(dest="rollout_command", metavar="ACTION", required=True)
    q = rs.add_parser("start", help='BUNDLE --stages "pilot=s1,s2; north=region:north; chain"')
    q.add_argument("bundle", help="8 to 64 hex digits of its sha256 (edge-hub bundle list)")
    q.add_argument("--stages", required=True)
    q.add_argument("--soak", default="24h", help="how long each stage soaks before its gates")
    q.add_argument("--urgent", action="store_true", help="apply during trading hours too")
    q.add_argument("--approval", action="append", metavar="STAGE",
                   help="a stage that waits for an approval before it begins")
    q.add_argument("--gate", action="append", metavar="NAME=VALUE",
                   help="a gate threshold (docs/rollout.md): max_apply_failures, "
                        "max_restarts_per_store, max_alert_ratio, min_excess_alerts, "
                        "min_device_days, inconclusive_soaks, "
                        "max_scoring_errors_per_device_day, max_scoring_error_ratio, "
                        "min_excess_scoring_errors")
    keyopts(q, remote=True)
    either(q)
    q.set_defaults(func=cmd_rollout)
    q = rs.add_parser("status", help="one rollout (with its stores) or a table of the last 50")
    q.add_argument("id", nargs="?")
    either(q)
    q.set_defaults(func=cmd_rollout)
    for name in ("pause", "resume", "abort", "approve"):
        q = rs.add_parser(name, help=f"{name} a rollout" + (" (rolls back)" if name == "abort"
                                                            else ""))
        q.add_argument("id")
        keyopts(q, remote=True)
        either(q)
        q.set_defaults(func=cmd_rollout)
