"""Local administration on the hub host: the database opened directly (--db), as a local actor.

Whoever can open the database file could change it anyway; what `--db` adds is that each
action is recorded in the audit log under a `local` actor named after the operating-system
user, with the host as its source.
"""

from __future__ import annotations

import getpass
import os
import socket
import time

from hub.domains.access import Actor, local_actor


def os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no passwd entry in a container
        return os.environ.get("USER") or "unknown"


def actor() -> Actor:
    from hub.config import check_id

    name = os_user()
    return local_actor(name if check_id(name) is None else "unknown")


def source() -> str:
    return f"cli:{socket.gethostname()[:64]}"


def clock() -> float:
    return time.time()


def add_db_args(p, remote: bool = True) -> None:
    from hub.store import ENV_DB

    p.add_argument("--db", default=None,
                   help=f"hub database: a SQLite path or postgresql://... (default: the "
                        f"config's database.url, ${ENV_DB}, or ~/.local/state/edge-hub/hub.db)")
    p.add_argument("--config", default=os.environ.get("EDGE_HUB_CONFIG"),
                   help="hub config file (default $EDGE_HUB_CONFIG)")
    if remote:
        p.add_argument("--hub", default=None,
                       help="the hub's API URL (default $EDGE_HUB_URL); the token comes from "
                            "$EDGE_HUB_TOKEN or the credentials file")


def remote(args):
    """A Client when the command goes through the API (no --db, and a hub URL known).

    --hub and --db together is a mistake (exit 2), for every command: which one was meant?"""
    if getattr(args, "db", None):
        if getattr(args, "hub", None):
            from hub.cli.common import UsageError

            raise UsageError("give --hub (through the API) or --db (on the hub host), not both")
        return None
    from hub.cli.client import ENV_URL, Client, credentials_path, read_credentials

    if getattr(args, "hub", None) or os.environ.get(ENV_URL) \
            or read_credentials(credentials_path()).get("url"):
        return Client.from_args(args)
    return None


def config(args):
    from hub.config import HubConfig, load_config

    return load_config(args.config) if getattr(args, "config", None) else HubConfig()


def open_db(args, create: bool = False):
    """Open the hub database named by --db or the config (every domain's migrations)."""
    from hub.cli.common import open_db as open_url
    from hub.store import default_db

    return open_url(args.db or config(args).database.url or default_db(), create)
