"""`edge-agent outbox`: depth by class, bytes, oldest age and drops."""

from __future__ import annotations

from edge_agent.cli.output import age, print_json, table
from edge_agent.config import load_config
from edge_agent.outbox import KIND_CLASS, outbox_stats
from edge_agent.state import db as statedb
from edge_agent.service.paths import config_help, default_config_path


def register(sub) -> None:
    p = sub.add_parser("outbox", help="show what waits to be sent, and what was dropped",
                       description="Show the outbox: depth and bytes by class, the oldest row's "
                                   "age, and rows dropped by budget.")
    p.add_argument("--config", default=default_config_path(), help=config_help())
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    config = load_config(args.config)
    db = statedb.connect(config.state_path, readonly=True)
    try:
        stats = outbox_stats(db)
    finally:
        db.close()
    if args.json:
        print_json(stats)
        return 0
    dropped_by_class: dict[str, int] = {}
    for kind, d in stats["drops"].items():
        cls = KIND_CLASS.get(kind, "event")
        dropped_by_class[cls] = dropped_by_class.get(cls, 0) + d["count"]
    rows = [(name, c["rows"], c["bytes"], dropped_by_class.get(name, 0))
            for name, c in stats["classes"].items()]
    print(table(("class", "rows", "bytes", "dropped"), rows))
    dropped = ", ".join(f"{k} {v['count']}" for k, v in stats["drops"].items()) or "none"
    print(f"total {stats['rows']} rows, {stats['bytes']} bytes, oldest "
          f"{age(stats['oldest_age_s'])}, last seq {stats['last_seq']}; drops by kind: {dropped}")
    return 0
