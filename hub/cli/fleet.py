"""`edge-hub fleet|store|devices|alerts|ack`: through the API (--hub, $EDGE_HUB_URL, the
credentials file) as the token's user, or on the hub host (--db) as a local actor, recorded.

Both paths print the same: the API's answers come from the scoped functions of hub/app.py,
which --db calls directly with a local actor. Strings from stores go through escape() (tables
do it for every cell); --json prints JSON, which escapes control characters itself.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from hub.cli import local
from edge_common.output import escape, print_json, table


def register(sub, add_db=None) -> None:
    p = sub.add_parser("fleet", help="the chain by region, and the stores needing attention")
    p.add_argument("--region", help="only this region (drill in)")
    p.add_argument("--all", action="store_true", help="list every store, not only those "
                                                      "needing attention")
    p.add_argument("--limit", type=int, default=100, help="stores listed at most (default 100)")
    _common(p)
    p.set_defaults(func=cmd_fleet)

    p = sub.add_parser("store", help="one store: state, devices, open alerts, seq gaps, "
                                     "scoring errors")
    p.add_argument("store")
    p.add_argument("--forget-session", action="store_true",
                   help="forget the store's sessions, agent instance and seq accounting, so "
                        "its next birth brings it online (--db only; audited)")
    _common(p)
    p.set_defaults(func=cmd_store)

    p = sub.add_parser("devices", help="devices with their latest reading and decision")
    p.add_argument("--at-risk", action="store_true",
                   help="only devices predicted to fail, failed, or with an open alert")
    p.add_argument("--region")
    p.add_argument("--store")
    _common(p)
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("alerts", help="alerts raised and cleared")
    p.add_argument("--open", action="store_true", help="only alerts still raised")
    p.add_argument("--region")
    p.add_argument("--store")
    _common(p)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("ack", help="acknowledge an alert")
    p.add_argument("alert_id")
    _common(p)
    p.set_defaults(func=cmd_ack)


def _common(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    local.add_db_args(p)


def _local(args, action: str, obj: str, detail: dict[str, Any] | None = None):
    """The database and a local actor; the read is recorded in the audit log."""
    from hub.domains import audit

    db = local.open_db(args)
    with db.transaction() as tx:
        audit.record(tx, local.clock, local.actor(), action, obj,
                     {k: v for k, v in (detail or {}).items() if v}, local.source())
    return db, local.actor()


def cmd_fleet(args) -> int:
    from hub.cli.fleetview import render

    if not 1 <= args.limit <= 100000:
        from hub.errors import Invalid

        raise Invalid("--limit must be 1-100000")
    client = local.remote(args)
    rejects = None
    if client:
        from hub.errors import Forbidden

        view = client.get("/v1/fleet", region=args.region, all=args.all, limit=args.limit)
        if args.region is None:
            try:  # chain-wide: a scoped role may not read it, and does not need it
                rejects = client.get("/v1/rejects")
            except Forbidden:
                rejects = None
    else:
        from hub import app

        db, actor = _local(args, "fleet.read", "fleet", {"region": args.region})
        view = app.fleet_summary(db, actor, region=args.region, all_stores=args.all,
                                 limit=args.limit)
        rejects = app.scoped_rejects(db, actor)
    if args.json:
        print_json({**view, "rejects": rejects} if rejects is not None else view)
    else:
        print(render(view, rejects))
    return 0


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def device_rows(devs: list[dict[str, Any]], with_store: bool = True) -> str:
    rows = []
    for d in devs:
        status = d["values"].get("device.status") if d["values"] else None
        if d["stale"]:
            status = f"stale ({d['reason'] or '?'})"
        score = None if d["score"] is None else f"{d['score']:.2f}"
        row = [d["device"], d["kind"], status, d["decision"], score, d["open_alerts"], d["ts"]]
        rows.append(([d["store"]] if with_store else []) + row)
    headers = ["DEVICE", "KIND", "STATUS", "DECISION", "SCORE", "ALERTS", "LAST READING"]
    return table((["STORE"] if with_store else []) + headers, rows)


def alert_rows(alerts: list[dict[str, Any]], with_store: bool = True) -> str:
    rows = [([a["store"]] if with_store else []) +
            [a["id"], a["device"], a["what"], a["severity"], a["state"], a["since"],
             "yes" if a["acked"] else "no"] for a in alerts]
    return table((["STORE"] if with_store else []) +
                 ["ID", "DEVICE", "WHAT", "SEVERITY", "STATE", "SINCE", "ACKED"], rows)


def cmd_store(args) -> int:
    from hub.cli.fleetview import _ago, _state

    if args.forget_session:
        from hub.cli.stores import cmd_forget_session

        return cmd_forget_session(args)
    client = local.remote(args)
    if client:
        d = client.get(f"/v1/stores/{_quote(args.store)}")
    else:
        from hub import app

        db, actor = _local(args, "fleet.read", f"store:{args.store}")
        d = app.scoped_store_detail(db, actor, args.store)
    if args.json:
        print_json(d)
        return 0
    agent = d.get("agent") or {}
    print(f"store {escape(d['store'])} (region {escape(d['region'])}): "
          f"{_state(d['online'])} since {_ago(d['since'])}, "
          f"last seen {_ago(d['last_seen'])}, session {escape(d['session'])}")
    extra = ", ".join(f"{k.replace('_', ' ')} {escape(agent[k])}"
                      for k in ("agent_version", "model_version", "config_hash") if agent.get(k))
    if extra:
        print(extra)
    seq = d["seq"]
    print(f"messages: seq {seq['first']}..{seq['last']}, {seq['received']} received, "
          f"{seq['missing']} missing"
          + (": " + ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in d["gaps"])
             if d["gaps"] else ""))
    scoring = scoring_errors_text(d.get("scoring_errors"))
    if scoring:
        print(scoring)
    print()
    print(device_rows(d["devices"], with_store=False) if d["devices"] else "no devices yet")
    print()
    print(alert_rows(d["alerts"], with_store=False) if d["alerts"] else "no open alerts")
    from hub.cli.control import store_control_text

    print(store_control_text(d))  # flags, bundles, command refusals (hub.control)
    return 0


def _by_reason(counts: dict[str, int]) -> str:
    return ", ".join(f"{escape(k)} {v}" for k, v in sorted(counts.items(), key=lambda kv:
                                                            (-kv[1], kv[0])) if v)


def scoring_errors_text(sc: dict[str, Any] | None) -> str:
    """One line on the devices the store's agent left without a model score (its
    scoring_errors events): the last 24 h and in all, by reason; "" when both are zero."""
    if not sc or not (sc["total"] or sc["last_24h"]):
        return ""
    parts = [f"{sc['last_24h']} in the last 24 h ({_by_reason(sc['last_24h_by_reason'])})"
             if sc["last_24h"] else "none in the last 24 h"]
    if sc["total"]:   # zero after the agent's state database was made again
        parts.append(f"{sc['total']} since the agent's state database was made "
                     f"({_by_reason(sc['by_reason'])})")
    model = f"; model {escape(sc['model'])}" if sc.get("model") else ""
    return ("scoring errors (devices left without a model score): " + ", ".join(parts)
            + model)


def cmd_devices(args) -> int:
    client = local.remote(args)
    if client:
        devs = client.get("/v1/devices", at_risk=args.at_risk, region=args.region,
                          store=args.store)
    else:
        from hub import app

        db, actor = _local(args, "fleet.read", "devices",
                           {"region": args.region, "store": args.store})
        devs = app.scoped_devices(db, actor, at_risk=args.at_risk, region=args.region,
                             store=args.store, limit=100000)
    if args.json:
        print_json(devs)
    elif not devs:
        print("no devices at risk" if args.at_risk else "no devices")
    else:
        print(device_rows(devs))
    return 0


def cmd_alerts(args) -> int:
    client = local.remote(args)
    if client:
        rows = client.get("/v1/alerts", open=args.open, region=args.region, store=args.store)
    else:
        from hub import app

        db, actor = _local(args, "alerts.read", "alerts",
                           {"region": args.region, "store": args.store})
        rows = app.scoped_alerts(db, actor, open_only=args.open, region=args.region,
                            store=args.store, limit=100000)
    if args.json:
        print_json(rows)
    elif not rows:
        print("no open alerts" if args.open else "no alerts")
    else:
        print(alert_rows(rows))
    return 0


def cmd_ack(args) -> int:
    client = local.remote(args)
    if client:
        alert = client.post(f"/v1/alerts/{_quote(args.alert_id)}/ack")
    else:
        from hub import app

        db = local.open_db(args)
        alert = app.ack_alert(db, local.actor(), local.clock, args.alert_id, local.source())
    if args.json:
        print_json(alert)
    else:
        print(f"acknowledged {escape(alert['id'])}: {escape(alert['store'])} "
              f"{escape(alert['device'])} {escape(alert['what'])} ({escape(alert['state'])}) "
              f"by {escape(alert['acked_by'])}")
    return 0


# For `edge-hub demo` (which prints the fleet of its own database every few seconds) ----------

def fleet_text(db) -> str:
    """The fleet view as `edge-hub fleet --db` prints it (not recorded: the demo's own)."""
    from hub import app
    from hub.cli.fleetview import render

    actor = local.actor()
    return render(app.fleet_summary(db, actor), app.scoped_rejects(db, actor))


def devices_text(db, at_risk: bool = False, region: str | None = None) -> str:
    """Devices as `edge-hub devices --db` prints them."""
    from hub import app

    devs = app.scoped_devices(db, local.actor(), at_risk=at_risk, region=region, limit=100000)
    if not devs:
        return "no devices at risk" if at_risk else "no devices"
    return device_rows(devs)
