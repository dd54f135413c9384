"""`edge-hub fleet`, `store`, `devices`, `alerts`, `ack`: what central IT reads and does.

Strings from stores go through escape() (tables do it for every cell); --json prints as is.
"""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

from hub.cli.common import (EXIT_OK, ago, escape, print_json, state_word, store_of,
                            table)
from hub.domains import alerts, fleet


def fleet_view(db, region: str | None = None) -> dict[str, Any]:
    """The fleet as `edge-hub fleet --json` prints it."""
    stores = fleet.stores(db, region=region)
    regions: dict[str, list[dict[str, Any]]] = {}
    for s in stores:
        regions.setdefault(s["region"], []).append(s)
    return {"regions": regions, "stores": len(stores),
            "online": sum(s["online"] is True for s in stores),
            "offline": sum(s["online"] is False for s in stores),
            "at_risk": sum(s["at_risk"] for s in stores), "rejects": fleet.rejects(db),
            "_list": stores}


def fleet_text(db, region: str | None = None) -> str:
    """The fleet as `edge-hub fleet` prints it for a person."""
    view = fleet_view(db, region)
    stores, regions, rejects = view.pop("_list"), view["regions"], view["rejects"]
    if not stores:
        return "no stores have reported yet"
    rows = [(s["region"], s["store"], state_word(s["online"]),
             ago(s["since"]), ago(s["last_seen"]), s["devices"], s["at_risk"],
             s["open_alerts"], s["seq"]["missing"]) for s in stores]
    lines = [table(("REGION", "STORE", "STATE", "SINCE", "LAST SEEN", "DEVICES", "AT RISK",
                    "OPEN ALERTS", "MISSING"), rows)]
    online = sum(s["online"] is True for s in stores)
    offline = sum(s["online"] is False for s in stores)
    unknown = len(stores) - online - offline
    lines.append(f"\n{len(stores)} stores in {len(regions)} regions: {online} online, "
                 f"{offline} offline" + (f", {unknown} not yet born" if unknown else "")
                 + f"; {sum(s['at_risk'] for s in stores)} devices at risk")
    if rejects:
        lines.append("rejected messages: "
                     + ", ".join(f"{escape(k)} {v}" for k, v in rejects.items()))
    return "\n".join(lines)


def cmd_fleet(args: argparse.Namespace) -> int:
    db = store_of(args)
    if args.json:
        view = fleet_view(db, args.region)
        view.pop("_list")
        print_json(view)
    else:
        print(fleet_text(db, args.region))
    return EXIT_OK


def _device_rows(devs: list[dict[str, Any]], with_store: bool = True) -> str:
    rows = []
    for d in devs:
        status = d["values"].get("device.status") if d["values"] else None
        if d["stale"]:
            status = f"stale ({d['reason'] or '?'})"
        score = None if d["score"] is None else f"{d['score']:.2f}"
        row = [d["device"], d["kind"], status, d["decision"], score, d["open_alerts"],
               d["ts"]]
        rows.append(([d["store"]] if with_store else []) + row)
    headers = ["DEVICE", "KIND", "STATUS", "DECISION", "SCORE", "ALERTS", "LAST READING"]
    return table((["STORE"] if with_store else []) + headers, rows)


def _alert_rows(alerts: list[dict[str, Any]], with_store: bool = True) -> str:
    rows = [([a["store"]] if with_store else []) +
            [a["id"], a["device"], a["what"], a["severity"], a["state"], a["since"],
             "yes" if a["acked"] else "no"] for a in alerts]
    return table((["STORE"] if with_store else []) +
                        ["ID", "DEVICE", "WHAT", "SEVERITY", "STATE", "SINCE", "ACKED"], rows)


def cmd_store(args: argparse.Namespace) -> int:
    from hub.app import store_detail

    detail = store_detail(store_of(args), args.store)
    if args.json:
        print_json(detail)
        return EXIT_OK
    d = detail
    agent = d["agent"] or {}
    print(f"store {escape(d['store'])} (region {escape(d['region'])}): "
          f"{state_word(d['online'])} since {ago(d['since'])}, "
          f"last seen {ago(d['last_seen'])}, session {d['session']}")
    extra = ", ".join(f"{k.replace('_', ' ')} {escape(agent[k])}"
                      for k in ("agent_version", "model_version", "config_hash") if agent.get(k))
    if extra:
        print(extra)
    seq = d["seq"]
    print(f"messages: seq {seq['first']}..{seq['last']}, {seq['received']} received, "
          f"{seq['missing']} missing"
          + (": " + ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in d["gaps"])
             if d["gaps"] else ""))
    print()
    print(_device_rows(d["devices"], with_store=False) if d["devices"] else "no devices yet")
    print()
    print(_alert_rows(d["alerts"], with_store=False) if d["alerts"] else "no open alerts")
    from hub.cli.control import store_control_text

    print(store_control_text(d))
    return EXIT_OK


def devices_text(db, at_risk: bool = False, region: str | None = None) -> str:
    """Devices as `edge-hub devices` prints them for a person."""
    devs = fleet.devices(db, at_risk=at_risk, region=region)
    if not devs:
        return "no devices at risk" if at_risk else "no devices"
    return _device_rows(devs)


def cmd_devices(args: argparse.Namespace) -> int:
    db = store_of(args)
    if args.json:
        print_json(fleet.devices(db, at_risk=args.at_risk, region=args.region))
    else:
        print(devices_text(db, args.at_risk, args.region))
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    rows = alerts.alerts(store_of(args), open_only=args.open)
    if args.json:
        print_json(rows)
    elif not rows:
        print("no open alerts" if args.open else "no alerts")
    else:
        print(_alert_rows(rows))
    return EXIT_OK


def cmd_ack(args: argparse.Namespace) -> int:
    alert = alerts.ack(store_of(args), args.alert_id, args.by)
    if args.json:
        print_json(alert)
    else:
        print(f"acknowledged {escape(alert['id'])}: {escape(alert['store'])} "
              f"{escape(alert['device'])} {escape(alert['what'])} ({escape(alert['state'])}) "
              f"by {escape(alert['acked_by'])}")
    return EXIT_OK



def register(sub, add_db) -> None:
    p = sub.add_parser("fleet", help="stores by region: online, offline since, devices at risk")
    p.add_argument("--region", help="only this region")
    add_db(p)
    p.set_defaults(func=cmd_fleet)

    p = sub.add_parser("store", help="one store: state, devices, open alerts, seq gaps")
    p.add_argument("store")
    add_db(p)
    p.set_defaults(func=cmd_store)

    p = sub.add_parser("devices", help="devices with their latest reading and decision")
    p.add_argument("--at-risk", action="store_true",
                   help="only devices predicted to fail, failed, or with an open alert")
    p.add_argument("--region")
    add_db(p)
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("alerts", help="alerts raised and cleared")
    p.add_argument("--open", action="store_true", help="only alerts still raised")
    add_db(p)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("ack", help="acknowledge an alert")
    p.add_argument("alert_id")
    p.add_argument("--by", default=os.environ.get("USER") or _user(), help="who acknowledges")
    add_db(p)
    p.set_defaults(func=cmd_ack)


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry in a container: acknowledge as "unknown"
        return "unknown"
