"""The `edge-hub` command line for central IT: one module per command group.

    common.py   exit codes, UsageError, opening the database, console helpers
    serve.py    serve (with --api: the HTTP API beside ingest)
    fleet.py    fleet, store, devices, alerts, ack (through the API, or --db)
    quarantine.py  quarantine list|show|drop
    stores.py   stores prune, store --forget-session
    users.py    users add|list|show|disable|rotate-token
    audit.py    audit list|verify|export|checkpoint
    api.py      api (the HTTP API alone)
    acl.py      acl render (the broker's ACL and password file)
    check_config.py  check-config FILE
    tickets.py  tickets list, show, retry (through the API, or --db)
    approvals.py approvals list, show, approve, deny (through the API, or --db)
    demo.py     demo
    control.py  keys, cmd, flags, bundle, rollout (signed commands, flags, bundles, rollouts;
                cmd, flags, bundle list and rollout through the API, or --db)
    local.py, client.py, fleetview.py   --db as a local actor; the API client; the fleet view

`edge-hub --hub URL COMMAND ...` is the same as `edge-hub COMMAND ... --hub URL`.

Exit codes: 0 done; 1 the work failed (unknown store or alert, broker unreachable, no
database, 401/403 from the API); 2 a mistake in the arguments or the config. No user mistake
prints a traceback. Every read command takes `--json`; it goes through the API when a hub URL
is known (--hub, $EDGE_HUB_URL, the credentials file), else to the database of `--db`
(default: $EDGE_HUB_DB, else ~/.local/state/edge-hub/hub.db), recorded as a local actor.
A new command group is a module here with `register(sub, add_db)`, listed in build_parser().
"""

from __future__ import annotations

import argparse
import sys

from hub import __version__
from hub.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from edge_common.output import escape
from hub.errors import ConfigError, HubError, Invalid

HUB_LIBRARIES = ("paho-mqtt", "psycopg", "orjson", "amqtt", "starlette", "uvicorn", "httpx")


def add_db(p: argparse.ArgumentParser, json_flag: bool = True) -> None:
    """--db (and --json) for a command."""
    from hub.store import ENV_DB, default_db

    p.add_argument("--db", default=default_db(),
                   help=f"fleet database: a SQLite path or postgresql://... (default ${ENV_DB} "
                        f"or {default_db()})")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON for scripts")


def build_parser() -> argparse.ArgumentParser:
    from hub.cli import (acl, api, approvals, audit, check_config, control, demo, fleet,
                         quarantine, serve, stores, tickets, users)

    parser = argparse.ArgumentParser(
        prog="edge-hub", description="Retail Edge hub: fleet state, alert routing, central IT")
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    parser.add_argument("--hub", dest="global_hub", metavar="URL",
                        help="the hub's API URL, for a command that goes through the API "
                             "(the same as that command's own --hub)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.register(sub, add_db)
    fleet.register(sub, add_db)
    quarantine.register(sub, add_db)
    stores.register(sub, add_db)
    users.register(sub)
    audit.register(sub)
    api.register(sub)
    acl.register(sub)
    check_config.register(sub)
    tickets.register(sub, add_db)
    approvals.register(sub, add_db)
    demo.register(sub).set_defaults(func=demo.run)
    control.register(sub, add_db)  # keys, cmd, flags, bundle, rollout (issue 14)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the hub CLI; return the exit code."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit: a closed pipe is then handled below
        return code
    except BrokenPipeError:
        # `edge-hub store X | head -1`: the reader left. Nothing more to say, to anyone; point
        # stdout at /dev/null so the interpreter's own flush at exit does not complain either.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for arg in argv:
        # A byte that is not UTF-8 reaches Python as a lone surrogate (`--region $'\xff'`).
        if any("\ud800" <= ch <= "\udfff" for ch in arg):
            shown = arg.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            print(f"edge-hub: an argument is not valid UTF-8: {shown[:80]}", file=sys.stderr)
            return EXIT_USAGE
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
    if args.global_hub:   # `edge-hub --hub URL cmd ...` as `edge-hub cmd ... --hub URL`
        if not hasattr(args, "hub"):
            print(f"edge-hub: --hub: `edge-hub {args.command}` does not go through the API",
                  file=sys.stderr)
            return EXIT_USAGE
        if args.hub not in (None, args.global_hub):
            print("edge-hub: --hub given twice with different URLs", file=sys.stderr)
            return EXIT_USAGE
        args.hub = args.global_hub
    try:
        return int(args.func(args) or 0)
    except (UsageError, Invalid, ConfigError) as err:  # a bad argument, value or --config
        print(f"edge-hub: {escape(err)}", file=sys.stderr)
        return EXIT_USAGE
    except HubError as err:
        print(f"edge-hub: {escape(err)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


__all__ = ["main", "build_parser", "add_db", "UsageError", "EXIT_OK", "EXIT_FAILED",
           "EXIT_USAGE"]
