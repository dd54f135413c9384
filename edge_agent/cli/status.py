"""`edge-agent status`: each device's last reading, stale or not and why, and the outbox depth.

It reads the agent's state on disk, so it works whether the daemon is running or not.
"""

from __future__ import annotations

import time

from edge_agent.cli.output import age, print_json, table
from edge_agent.config import load_config
from edge_agent.errors import StateError
from edge_agent.health.service import load_status, scoring_line
from edge_agent.outbox import outbox_stats
from edge_agent.reading import parse_ts, utcnow
from edge_agent.recorder import load_states
from edge_agent.state import db as statedb
from edge_agent.state.lock import holder
from edge_agent.service.paths import config_help, default_config_path

SUMMARY_KEYS = ("device.status", "printer.paper", "printer.cover", "host.cpu_pct",
                "host.disk_pct", "scanner.connected", "usb.present")


def register(sub) -> None:
    p = sub.add_parser("status", help="show devices, staleness and the outbox",
                       description="Show each device's last reading, whether it is stale and "
                                   "why, and the outbox depth, from the state on disk.")
    p.add_argument("--config", default=default_config_path(), help=config_help())
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def collect(config) -> dict:
    """Build the status document from the config and the state database."""
    now = utcnow()
    pid = holder(config.agent.state_dir)
    doc = {"store": config.agent.store, "region": config.agent.region,
           "agent": {"running": pid is not None, "pid": pid if pid and pid > 0 else None},
           "devices": [], "outbox": None, "scoring": None, "control": None}
    saved = {}
    health: dict = {}
    fault = statedb.read_fault(config.agent.state_dir)
    if config.state_path.exists():
        try:
            db = statedb.connect(config.state_path, readonly=True)
        except StateError as err:
            if fault is None:
                raise
            # The agent stopped because this file was replaced; say so rather than fail.
            doc["state_error"], db = str(err), None
        if db is not None:
            try:
                saved = load_states(db)
                doc["outbox"] = outbox_stats(db, time.time())
                scoring = load_status(db)
                doc["scoring"], health = scoring["scoring"], scoring["devices"]
                from edge_agent.control.state import status as control_status

                doc["control"] = control_status(db)
            finally:
                db.close()
    from edge_agent.sync.state import status_from_disk

    doc["sync"] = (None if doc.get("state_error")
                   else status_from_disk(config, running=pid is not None))
    # Why the agent stopped itself, if it did (its state database was deleted or replaced).
    doc["fault"] = fault
    for device in config.devices:
        entry = {"id": device.id, "kind": device.kind, "enabled": device.enabled,
                 "ts": None, "age_s": None, "stale": True, "reason": "never polled",
                 "values": {}}
        st = saved.get(device.id)
        if not device.enabled:
            entry["reason"] = "disabled"
        elif st:
            last, good = st["reading"], st["last_good"]
            entry["ts"] = last["ts"]
            entry["age_s"] = round((now - parse_ts(last["ts"])).total_seconds(), 1)
            good_age = (now - parse_ts(good["ts"])).total_seconds() if good else None
            entry["values"] = (good or last)["values"]
            entry["failures"] = st["failures"]
            if good_age is None:
                entry["reason"] = last.get("reason") or "no good reading yet"
            elif good_age > device.stale_after:
                if last.get("stale"):
                    why = last.get("reason") or "no answer"
                elif pid is None:
                    why = "the agent is not running"
                else:
                    why = "not polled since"
                entry["reason"] = (f"last good reading {age(good_age)} old "
                                   f"(max_age {age(device.stale_after)}): {why}")
            else:
                entry["stale"], entry["reason"] = False, None
            entry["last_good_ts"] = good["ts"] if good else None
        entry["health"] = health.get(device.id)
        doc["devices"].append(entry)
    return doc


def run(args) -> int:
    config = load_config(args.config)
    doc = collect(config)
    if args.json:
        print_json(doc)
        return 0
    agent = doc["agent"]
    print(f"store {doc['store']} ({doc['region']}): agent "
          + (f"running, pid {agent['pid']}" if agent["running"] else "not running"))
    if doc["fault"]:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(doc["fault"]["ts"]))
        reason = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in doc["fault"]["reason"])
        print(f"the agent stopped itself at {when}: {reason}")
    if doc.get("state_error"):
        print(f"state database: {doc['state_error']}")
    rows = []
    for d in doc["devices"]:
        shown = ", ".join(f"{k.split('.')[-1]}={d['values'][k]}" for k in SUMMARY_KEYS
                          if k in d["values"])
        rows.append((d["id"], d["kind"], "STALE" if d["stale"] else "ok", age(d["age_s"]),
                     shown or "-", d["reason"] or ""))
    print(table(("device", "kind", "state", "age", "last values", "why"), rows))
    if doc["sync"]:
        from edge_agent.sync.state import status_line

        print(status_line(doc["sync"]))
    ob = doc["outbox"]
    if ob:
        print(f"outbox: {ob['rows']} rows, {ob['bytes']} bytes, oldest {age(ob['oldest_age_s'])}")
    else:
        print("outbox: no state database yet")
    print(scoring_line(doc["scoring"], config.scoring.enabled))
    print(control_line(doc["control"], config))
    for d in doc["devices"]:
        h = d.get("health")
        if h and h["decision"] != "ok":
            score = f" (score {h['score']:.2f})" if h.get("score") is not None else ""
            print(f"  {d['id']}: {h['decision']}{score}")
    return 0


def control_line(control: dict | None, config) -> str:
    """Commands and flags from the hub in one or two lines."""
    if not config.control.enabled:
        return "control: commands and flags from the hub disabled in [control]"
    keys = len(config.trust.hub_keys)
    head = (f"control: {keys} hub key(s) pinned" if keys
            else "control: NO hub key pinned in [trust]: every command is refused")
    if not control:
        return head
    flags = control.get("flags")
    if flags:
        off = sorted(k for k, v in (flags.get("flags") or {}).items() if v is False)
        head += (f"; flags v{flags.get('version')}: " +
                 (", ".join(f"{k}=OFF" for k in off) if off else "all on"))
    else:
        head += "; flags: defaults (all on)"
    head += f"; last seq {control.get('high_seq', 0)}"
    applied = {k: v for k, v in (control.get("bundles") or {}).items() if v}
    if applied:
        head += "\n  bundles: " + ", ".join(
            f"{k} v{v.get('version')} ({str(v.get('sha256'))[:12]})"
            + (f", last good v{v['last_good']['version']}"
               if (v.get("last_good") or {}).get("version") else "")
            for k, v in applied.items())
    for kind, w in (control.get("wanted") or {}).items():
        head += "\n  " + wanted_line(kind, w)
    rejects = control.get("rejects") or {}
    if rejects:
        head += "\n  refused commands: " + ", ".join(f"{k} {v}" for k, v in rejects.items())
    return head


def wanted_line(kind: str, w: dict) -> str:
    """One bundle the hub wants and the agent has not applied yet, and what it waits for."""
    since = w.get("since")
    when = (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
            if isinstance(since, (int, float)) and since > 0 else "an unknown time")
    what = (f"bundle {kind} v{w.get('version')} ({str(w.get('sha256'))[:12]}) wanted "
            f"(desired state v{w.get('desired_version')}) since {when}, not applied: ")
    if w.get("staged"):
        return what + "staged, applies " + ("now" if w.get("urgent") else
                                             "after trading hours")
    asks = w.get("asks") if isinstance(w.get("asks"), int) else 0
    tries = w.get("asks_max") if isinstance(w.get("asks_max"), int) else asks + 1
    if asks >= tries:
        return what + (f"waiting for its content (asked {asks} times; asks again on the next "
                       "connection or desired state)")
    return what + f"waiting for its content (asked {asks} of {tries} times)"
