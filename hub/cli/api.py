"""`edge-hub api`: serve the HTTP API alone (API servers and ingest workers scale apart)."""

from __future__ import annotations

from hub.errors import Invalid
from hub.cli import local


def register(sub, add_db=None) -> None:
    p = sub.add_parser("api", help="serve the HTTP API (without ingest)")
    p.add_argument("--listen", help="HOST:PORT (default: the config's api.listen)")
    p.add_argument("--log-level", default="warning",
                   choices=("debug", "info", "warning", "error"))
    local.add_db_args(p, remote=False)
    p.set_defaults(func=cmd_api)


def cmd_api(args) -> int:
    from hub.api.app import create_app
    from hub.api.server import parse_listen, serve_forever

    cfg = local.config(args)
    listen = args.listen or cfg.api.listen
    if not listen:
        raise Invalid("no listener: pass --listen HOST:PORT or set api.listen in the config")
    parse_listen(listen)
    db = local.open_db(args, create=True)
    try:
        return serve_forever(create_app(db, cfg), listen, cfg, log_level=args.log_level)
    finally:
        db.close()
