"""`edge-agent status`: each device's last reading, stale or not and why, and the outbox depth.

It reads the agent's state on disk, so it works whether the daemon is running or not.
"""

from __future__ import annotations

import time
from datetime import timezone

from edge_agent.cli.output import age, print_json, table
from edge_agent.config import load_config
from edge_agent.outbox import outbox_stats
from edge_agent.sync.state import read_status as read_sync_status
from edge_agent.reading import parse_ts, utcnow
from edge_agent.recorder import load_states
from edge_agent.state import db as statedb
from edge_agent.state.lock import holder

SUMMARY_KEYS = ("device.status", "printer.paper", "printer.cover", "host.cpu_pct",
                "host.disk_pct", "scanner.connected", "usb.present")


def register(sub) -> None:
    p = sub.add_parser("status", help="show devices, staleness and the outbox",
                       description="Show each device's last reading, whether it is stale and "
                                   "why, and the outbox depth, from the state on disk.")
    p.add_argument("--config", required=True, help="TOML config file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def collect(config) -> dict:
    """Build the status document from the config and the state database."""
    now = utcnow()
    pid = holder(config.agent.state_dir)
    doc = {"store": config.agent.store, "region": config.agent.region,
           "agent": {"running": pid is not None, "pid": pid if pid and pid > 0 else None},
           "devices": [], "outbox": None, "sync": None}
    saved = {}
    sync = None
    if config.state_path.exists():
        db = statedb.connect(config.state_path, readonly=True)
        try:
            saved = load_states(db)
            doc["outbox"] = outbox_stats(db, time.time())
            sync = read_sync_status(db)
        finally:
            db.close()
    if config.sync.enabled or sync:
        doc["sync"] = sync_summary(config, sync, running=pid is not None)
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
                why = last.get("reason") if last.get("stale") else "no poll since"
                entry["reason"] = (f"last good reading {age(good_age)} old "
                                   f"(max_age {age(device.stale_after)}): {why}")
            else:
                entry["stale"], entry["reason"] = False, None
            entry["last_good_ts"] = good["ts"] if good else None
        doc["devices"].append(entry)
    return doc


def sync_summary(config, saved: dict | None, running: bool) -> dict:
    """The sync part of the status: what the client last wrote, corrected if the agent is gone."""
    out = {"enabled": config.sync.enabled, "broker": f"{config.sync.host}:{config.sync.port}",
           "connected": False, "since": None, "session": None, "hub_online": False,
           "last_ack": None, "last_error": None}
    if saved:
        out.update({k: saved.get(k) for k in ("connected", "since", "session", "hub_online",
                                              "last_ack", "last_error")})
    if not running and out["connected"]:
        # The agent died without saying so (killed, power cut): the file still says connected.
        out.update(connected=False, hub_online=False, last_error="agent not running")
    return out


def sync_line(sync: dict) -> str:
    """One line of text for the sync status."""
    if not sync["enabled"]:
        return "sync: disabled"
    if sync["connected"]:
        hub = "hub online" if sync["hub_online"] else "hub offline (outbox held)"
        trouble = f"; last error: {sync['last_error']}" if sync["last_error"] else ""
        return (f"sync: connected to {sync['broker']} since {sync['since']} "
                f"(session {sync['session']}), {hub}, last ack {sync['last_ack'] or 'never'}"
                + trouble)
    since = f" since {sync['since']}" if sync["since"] else ""
    why = f": {sync['last_error']}" if sync["last_error"] else ""
    return (f"sync: not connected to {sync['broker']}{since}{why}; "
            f"last ack {sync['last_ack'] or 'never'}")


def run(args) -> int:
    config = load_config(args.config)
    doc = collect(config)
    if args.json:
        print_json(doc)
        return 0
    agent = doc["agent"]
    print(f"store {doc['store']} ({doc['region']}): agent "
          + (f"running, pid {agent['pid']}" if agent["running"] else "not running"))
    rows = []
    for d in doc["devices"]:
        shown = ", ".join(f"{k.split('.')[-1]}={d['values'][k]}" for k in SUMMARY_KEYS
                          if k in d["values"])
        rows.append((d["id"], d["kind"], "STALE" if d["stale"] else "ok", age(d["age_s"]),
                     shown or "-", d["reason"] or ""))
    print(table(("device", "kind", "state", "age", "last values", "why"), rows))
    ob = doc["outbox"]
    if ob:
        print(f"outbox: {ob['rows']} rows, {ob['bytes']} bytes, oldest {age(ob['oldest_age_s'])}")
    else:
        print("outbox: no state database yet")
    if doc["sync"]:
        print(sync_line(doc["sync"]))
    return 0
