"""The `edge-hub` command line for central IT: one module per command group.

    common.py   exit codes, UsageError, opening the database, console helpers
    serve.py    serve
    fleet.py    fleet, store, devices, alerts, ack
    demo.py     demo
    control.py  keys, cmd, flags, bundle, rollout (signed commands, flags, bundles, rollouts)

Exit codes: 0 done; 1 the work failed (unknown store or alert, broker unreachable, no
database); 2 a mistake in the arguments. No user mistake prints a traceback. Every read command
takes `--json` and `--db` (default: $EDGE_HUB_DB, else ~/.local/state/edge-hub/hub.db).
A new command group is a module here with `register(sub, add_db)`, listed in build_parser().
"""

from __future__ import annotations

import argparse
import sys

from hub import __version__
from hub.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from hub.errors import HubError

HUB_LIBRARIES = ("paho-mqtt", "psycopg", "orjson", "amqtt")


def add_db(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """--db (and --json) for a command."""
    from hub.store import ENV_DB, default_db

    p.add_argument("--db", default=default_db(),
                   help=f"fleet database: a SQLite path or postgresql://... (default ${ENV_DB} "
                        f"or {default_db()})")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON for scripts")


def build_parser() -> argparse.ArgumentParser:
    from hub.cli import control, demo, fleet, serve

    parser = argparse.ArgumentParser(
        prog="edge-hub", description="Retail Edge hub: fleet state, alert routing, central IT")
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.register(sub, add_db)
    fleet.register(sub, add_db)
    demo.register(sub).set_defaults(func=demo.run)
    control.register(sub, add_db)  # keys, cmd, flags, bundle, rollout (issue 14)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the hub CLI; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from edge_common.versions import version_text

        print(version_text("edge-hub", __version__, HUB_LIBRARIES,
                           ["model: none at the hub (stores report theirs in their birth)"]))
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


__all__ = ["main", "build_parser", "add_db", "UsageError", "EXIT_OK", "EXIT_FAILED",
           "EXIT_USAGE"]
