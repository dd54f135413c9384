"""The `edge-hub` command line for central IT.

Exit codes: 0 done; 1 the work failed (unknown store or alert, broker unreachable, no
database); 2 a mistake in the arguments. No user mistake prints a traceback. Every read command
takes `--json` and `--db` (default: $EDGE_HUB_DB, else ~/.local/state/edge-hub/hub.db).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from typing import Any

from hub import __version__
from hub.errors import HubError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(HubError):
    """A mistake in the arguments (exit 2)."""


def _store(args: argparse.Namespace, create: bool = False):
    from hub.store import open_store

    url = args.db
    if "://" in url and not url.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise UsageError(f"--db: unsupported database URL {url.split('://')[0]}:// "
                         "(use a SQLite path, sqlite:///PATH or postgresql://...)")
    return open_store(url, create=create)


def _broker(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--broker: expected HOST:PORT, got {text!r}")
    return host, int(port)


def _out():
    from edge_agent.cli import output  # the agent's table and JSON printers, shared

    return output


def _state(online: bool | None) -> str:
    return "unknown" if online is None else "online" if online else "OFFLINE"


def _ago(ts: float | None) -> str:
    return "-" if ts is None else _out().age(max(0.0, time.time() - ts)) + " ago"


# Commands -------------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    from edge_agent import logs
    from hub.alerts import FlapPolicy
    from hub.ingest import Settings
    from hub.serve import default_client_id, serve

    host, port = _broker(args.broker)
    if args.batch_max < 1 or args.batch_ms < 1:
        raise UsageError("--batch-max and --batch-ms must be >= 1")
    logs.setup(args.log_format, args.log_level)
    settings = Settings(
        host=host, port=port, client_id=args.client_id or default_client_id(),
        group=args.group, prefix=args.prefix, shared=not args.embedded_broker,
        mqtt5=not args.embedded_broker, keepalive=args.keepalive,
        batch_max=args.batch_max, batch_s=args.batch_ms / 1000.0,
        flaps=FlapPolicy(max_flaps=args.flap_max, window_s=args.flap_window,
                         stable_s=args.flap_stable))
    return serve(_store(args, create=True), settings, embedded=args.embedded_broker)


def cmd_fleet(args: argparse.Namespace) -> int:
    from hub import fleet

    db = _store(args)
    stores = fleet.stores(db, region=args.region)
    rejects = fleet.rejects(db)
    regions: dict[str, list[dict[str, Any]]] = {}
    for s in stores:
        regions.setdefault(s["region"], []).append(s)
    if args.json:
        _out().print_json({"regions": regions, "stores": len(stores),
                           "online": sum(s["online"] is True for s in stores),
                           "offline": sum(s["online"] is False for s in stores),
                           "at_risk": sum(s["at_risk"] for s in stores), "rejects": rejects})
        return EXIT_OK
    if not stores:
        print("no stores have reported yet")
        return EXIT_OK
    rows = [(s["region"], s["store"], _state(s["online"]),
             _ago(s["since"]), _ago(s["last_seen"]), s["devices"], s["at_risk"],
             s["open_alerts"], s["seq"]["missing"]) for s in stores]
    print(_out().table(("REGION", "STORE", "STATE", "SINCE", "LAST SEEN", "DEVICES", "AT RISK",
                        "OPEN ALERTS", "MISSING"), rows))
    online = sum(s["online"] is True for s in stores)
    offline = sum(s["online"] is False for s in stores)
    unknown = len(stores) - online - offline
    print(f"\n{len(stores)} stores in {len(regions)} regions: {online} online, {offline} offline"
          + (f", {unknown} not yet born" if unknown else "")
          + f"; {sum(s['at_risk'] for s in stores)} devices at risk")
    if rejects:
        print("rejected messages: " + ", ".join(f"{k} {v}" for k, v in rejects.items()))
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
    return _out().table((["STORE"] if with_store else []) + headers, rows)


def _alert_rows(alerts: list[dict[str, Any]], with_store: bool = True) -> str:
    rows = [([a["store"]] if with_store else []) +
            [a["id"], a["device"], a["what"], a["severity"], a["state"], a["since"],
             "yes" if a["acked"] else "no"] for a in alerts]
    return _out().table((["STORE"] if with_store else []) +
                        ["ID", "DEVICE", "WHAT", "SEVERITY", "STATE", "SINCE", "ACKED"], rows)


def cmd_store(args: argparse.Namespace) -> int:
    from hub import cli_control, fleet

    db = _store(args)
    detail = fleet.store_detail(db, args.store)
    detail.update(cli_control.store_control(db, args.store))  # flags, command refusals
    if args.json:
        _out().print_json(detail)
        return EXIT_OK
    d = detail
    agent = d["agent"] or {}
    print(f"store {d['store']} (region {d['region']}): "
          f"{_state(d['online'])} since {_ago(d['since'])}, "
          f"last seen {_ago(d['last_seen'])}, session {d['session']}")
    extra = ", ".join(f"{k.replace('_', ' ')} {agent[k]}"
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
    print(cli_control.store_control_text(d))
    return EXIT_OK


def cmd_devices(args: argparse.Namespace) -> int:
    from hub import fleet

    devs = fleet.devices(_store(args), at_risk=args.at_risk, region=args.region)
    if args.json:
        _out().print_json(devs)
    elif not devs:
        print("no devices at risk" if args.at_risk else "no devices")
    else:
        print(_device_rows(devs))
    return EXIT_OK


def cmd_alerts(args: argparse.Namespace) -> int:
    from hub import fleet

    rows = fleet.alerts(_store(args), open_only=args.open)
    if args.json:
        _out().print_json(rows)
    elif not rows:
        print("no open alerts" if args.open else "no alerts")
    else:
        print(_alert_rows(rows))
    return EXIT_OK


def cmd_ack(args: argparse.Namespace) -> int:
    from hub import fleet

    alert = fleet.ack(_store(args), args.alert_id, args.by)
    if args.json:
        _out().print_json(alert)
    else:
        print(f"acknowledged {alert['id']}: {alert['store']} {alert['device']} {alert['what']} "
              f"({alert['state']}) by {alert['acked_by']}")
    return EXIT_OK


# Parser ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    from hub.store import ENV_DB, default_db

    parser = argparse.ArgumentParser(
        prog="edge-hub", description="Retail Edge hub: fleet state, alert routing, central IT")
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    db_help = f"fleet database: a SQLite path or postgresql://... (default ${ENV_DB} or {{}})"

    def common(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
        p.add_argument("--db", default=default_db(), help=db_help.format(default_db()))
        if json_flag:
            p.add_argument("--json", action="store_true", help="print JSON for scripts")

    p = sub.add_parser("serve", help="run a hub worker: ingest, fleet state, alert feed")
    p.add_argument("--broker", default="127.0.0.1:1883", help="MQTT broker HOST:PORT")
    common(p, json_flag=False)
    p.add_argument("--embedded-broker", action="store_true",
                   help="run an embedded MQTT 3.1.1 broker (amqtt) on --broker; one worker")
    p.add_argument("--client-id", help="MQTT client id; each worker needs its own, stable one "
                                       "(default edge-hub-HOSTNAME)")
    p.add_argument("--group", default="hub", help="shared subscription group")
    p.add_argument("--prefix", default="edge/v1", help="topic prefix")
    p.add_argument("--keepalive", type=int, default=30, help="MQTT keep-alive, seconds")
    p.add_argument("--batch-max", type=int, default=1000, help="messages per transaction")
    p.add_argument("--batch-ms", type=float, default=50, help="longest wait to fill a batch")
    p.add_argument("--flap-max", type=int, default=4,
                   help="an alert with more transitions than this in --flap-window is flapping")
    p.add_argument("--flap-window", type=float, default=300.0, help="seconds")
    p.add_argument("--flap-stable", type=float, default=60.0,
                   help="seconds a flapping alert must be stable before it is sent")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("fleet", help="stores by region: online, offline since, devices at risk")
    p.add_argument("--region", help="only this region")
    common(p)
    p.set_defaults(func=cmd_fleet)

    p = sub.add_parser("store", help="one store: state, devices, open alerts, seq gaps")
    p.add_argument("store")
    common(p)
    p.set_defaults(func=cmd_store)

    p = sub.add_parser("devices", help="devices with their latest reading and decision")
    p.add_argument("--at-risk", action="store_true",
                   help="only devices predicted to fail, failed, or with an open alert")
    p.add_argument("--region")
    common(p)
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("alerts", help="alerts raised and cleared")
    p.add_argument("--open", action="store_true", help="only alerts still raised")
    common(p)
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("ack", help="acknowledge an alert")
    p.add_argument("alert_id")
    p.add_argument("--by", default=os.environ.get("USER") or _user(), help="who acknowledges")
    common(p)
    p.set_defaults(func=cmd_ack)

    from hub import demo

    demo.register(sub).set_defaults(func=demo.run)
    from hub import cli_control  # keys, cmd, flags (issue 14)

    cli_control.register(sub, common)
    return parser


def _user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry in a container: acknowledge as "unknown"
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """Run the hub CLI; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from edge_agent.versions import HUB_LIBRARIES, version_text

        print(version_text("edge-hub", __version__, HUB_LIBRARIES))
        return EXIT_OK
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"edge-hub: {err}", file=sys.stderr)
        return EXIT_USAGE
    except HubError as err:
        print(f"edge-hub: {err}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
