"""`edge-hub serve`: run one hub worker."""

from __future__ import annotations

import argparse
import logging
import os

from hub.cli.common import UsageError, parse_broker, store_of


def register(sub, add_db) -> None:
    # Every option left out comes from the hub config (--config), else the config's default:
    # the flags override the file, the file overrides the built-in defaults (hub.example.toml).
    p = sub.add_parser("serve", help="run a hub worker: ingest, fleet state, alert feed "
                                     "(and the HTTP API with --api)")
    p.add_argument("--broker", help="MQTT broker HOST:PORT (default: [broker] host and port, "
                                    "127.0.0.1:1883)")
    add_db(p, json_flag=False)
    p.set_defaults(db=None)  # None: [database] url, else $EDGE_HUB_DB or the default file
    p.add_argument("--embedded-broker", action="store_true", default=None,
                   help="run an embedded MQTT 3.1.1 broker (amqtt) on --broker; one worker")
    p.add_argument("--client-id", help="MQTT client id; each worker needs its own, stable one "
                                       "(default edge-hub-HOSTNAME)")
    p.add_argument("--group", help="shared subscription group (default hub)")
    p.add_argument("--prefix", help="topic prefix (default edge/v1)")
    p.add_argument("--keepalive", type=int, help="MQTT keep-alive, seconds (default 30)")
    p.add_argument("--batch-max", type=int, help="messages per transaction (default 1000)")
    p.add_argument("--batch-ms", type=float, help="longest wait to fill a batch (default 50)")
    p.add_argument("--flap-max", type=int,
                   help="an alert with more transitions than this in --flap-window is "
                        "flapping (default 4)")
    p.add_argument("--flap-window", type=float, help="seconds (default 300)")
    p.add_argument("--flap-stable", type=float,
                   help="seconds a flapping alert must be stable before it is sent (default 60)")
    p.add_argument("--max-skew", type=float, default=3600.0,
                   help="seconds a store's timestamp may lie ahead of the hub's clock "
                        "(a later one is rejected as implausible_ts)")
    p.add_argument("--commit-give-up", type=float, default=120.0, metavar="SECONDS",
                   help="how long a batch that cannot commit (the database unreachable) is "
                        "retried before the worker exits 1 for its supervisor (default 120)")
    p.add_argument("--keep-readings", default="7d", metavar="AGE",
                   help="telemetry kept this long, then pruned in the background (default 7d; "
                        "0 keeps it forever)")
    p.add_argument("--keep-messages", default="30d", metavar="AGE",
                   help="other messages from stores kept this long (default 30d; 0: forever)")
    p.add_argument("--keep-feed", default="30d", metavar="AGE",
                   help="alert feed rows sent or superseded kept this long (default 30d)")
    p.add_argument("--mark-unseen", default="30d", metavar="AGE",
                   help="a store not heard from this long is marked unseen (default 30d; "
                        "`edge-hub stores prune` removes such stores)")
    p.add_argument("--check", action="store_true",
                   help="validate these options and the config, say what would run, and exit "
                        "(0, or 2 with the mistake) without connecting to anything")
    p.add_argument("--api", metavar="HOST:PORT",
                   help="also serve the HTTP API here (default: [api] listen; "
                        "`edge-hub api` serves it alone)")
    p.add_argument("--config", default=os.environ.get("EDGE_HUB_CONFIG"),
                   help="hub config file (hub.example.toml; default $EDGE_HUB_CONFIG)")
    p.add_argument("--tickets", metavar="FILE",
                   help="a TOML file with the [tickets] policy and connectors (docs/tickets.md); "
                        "default: the [tickets] table of --config")
    p.add_argument("--log-format", choices=("text", "json"))
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_serve)


def _pick(flag, value):
    return value if flag is None else flag


def cmd_serve(args: argparse.Namespace) -> int:
    from edge_common import logs
    from edge_protocol.timestamps import DEFAULT_SKEW, Skew
    from hub.app import default_client_id, serve
    from hub.cli.local import config as load_config
    from hub.domains.alerts import FlapPolicy
    from hub.ingest import Settings
    from hub.store import default_db

    config = load_config(args)
    b, ing, lg = config.broker, config.ingest, config.log
    if b.tls or b.tls_cert:
        # Refused rather than ignored: a worker must not connect in the clear when its
        # config says TLS. The bus has no TLS support yet (a follow-up of issue 12).
        raise UsageError("[broker] tls and tls_cert are not used by edge-hub serve yet; remove "
                         "them (a broker listener on the hub host, or a TLS tunnel, meanwhile)")
    password = ""
    if b.password_file:
        from pathlib import Path

        try:
            password = Path(b.password_file).read_text().strip()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"[broker] password_file: cannot read {b.password_file}") from err
    host, port = parse_broker(args.broker) if args.broker else (b.host, b.port)
    batch_max, batch_ms = _pick(args.batch_max, ing.batch_max), _pick(args.batch_ms,
                                                                      ing.batch_ms)
    if batch_max < 1 or batch_ms < 1:
        raise UsageError("--batch-max and --batch-ms must be >= 1")
    if not 0 < args.commit_give_up <= 86400:
        raise UsageError("--commit-give-up: expected seconds between 0 and a day")
    if not 0 < args.max_skew <= 366 * 86400:
        raise UsageError("--max-skew: expected seconds between 0 and a year")
    from hub.app import Retention
    from hub.cli.common import parse_duration

    def keep(text: str, option: str) -> float | None:
        return parse_duration(text, option, zero=True) or None

    retention = Retention(readings_s=keep(args.keep_readings, "--keep-readings"),
                          messages_s=keep(args.keep_messages, "--keep-messages"),
                          feed_s=keep(args.keep_feed, "--keep-feed"),
                          unseen_s=keep(args.mark_unseen, "--mark-unseen"))
    embedded = _pick(args.embedded_broker, b.embedded)
    if not args.check:
        logs.setup(_pick(args.log_format, lg.format), _pick(args.log_level, lg.level))
    from hub import ticketing

    # --tickets FILE wins; without it, the hub config's [tickets] table (docs/tickets.md).
    policy = ticketing.load_policy(args.tickets) if args.tickets else \
        ticketing.policy_from_config(config)
    if policy.enabled:   # settings and secrets checked before starting (the worker makes its own)
        for connector in ticketing.build_connectors(policy).values():
            connector.cleanup()
    settings = Settings(
        host=host, port=port, client_id=args.client_id or b.client_id or default_client_id(),
        group=_pick(args.group, b.group), prefix=_pick(args.prefix, b.prefix),
        shared=not embedded, mqtt5=not embedded,
        keepalive=_pick(args.keepalive, b.keepalive), username=b.username, password=password,
        batch_max=batch_max, batch_s=batch_ms / 1000.0, give_up_s=args.commit_give_up,
        flaps=FlapPolicy(max_flaps=_pick(args.flap_max, ing.flap_max),
                         window_s=_pick(args.flap_window, ing.flap_window),
                         stable_s=_pick(args.flap_stable, ing.flap_stable)),
        skew=Skew(future_s=args.max_skew, past_s=DEFAULT_SKEW.past_s),
        hold_after_s=ing.hold_stores_after,
        tickets=policy if policy.enabled else None,
        on_transitions=ticketing.hook(policy) if policy.enabled else None)
    url = args.db or config.database.url or default_db()
    listen = args.api or config.api.listen
    if args.check:
        from hub.app import _safe
        from hub.cli.common import escape

        print(f"edge-hub serve: ok: worker {escape(settings.client_id)}, broker {host}:{port}"
              f"{' (embedded)' if embedded else ''}, database {escape(_safe(url))}"
              + (f", api {escape(listen)}" if listen else "")
              + (f", tickets {len(policy.families)} families "
                 f"({'--tickets' if args.tickets else 'config'})" if policy.enabled else ""))
        return 0
    args.db = url
    db = store_of(args, create=True)
    try:
        services = [_api(url, listen, config)] if listen else []
        ring = _ring(config)
        checkpoints = _checkpoints(db, config, ring)
    except BaseException:
        db.close()
        raise
    from hub.app import tune_gc

    tune_gc()  # a worker's process only: fewer, cheaper cycle collections (docs/benchmarks.md)
    return serve(db, settings, embedded=embedded, services=services, checkpoints=checkpoints,
                 retention=retention, ring=ring)


def _ring(config):
    """The hub's key ring (keys.directory, else $EDGE_HUB_KEYS or the default folder), or None
    when there is none: it signs audit checkpoints and the desired states rollouts move."""
    from pathlib import Path

    from hub.keys import KeyRing, default_dir

    directory = config.keys.directory or default_dir()
    if not KeyRing.exists(directory):
        return None
    passphrase = None
    if config.keys.passphrase_file:
        try:
            passphrase = Path(config.keys.passphrase_file).read_bytes().strip()
        except OSError as err:
            raise UsageError(f"keys.passphrase_file: cannot read it: {err.strerror}") from err
    else:
        from hub.keys import passphrase_from

        passphrase = passphrase_from(None)  # $EDGE_HUB_KEY_PASSPHRASE
    from hub.keys import KeyringError

    try:
        return KeyRing.load(directory, passphrase)
    except KeyringError as err:  # say why; checkpoints, if asked for, then refuse to start
        logging.getLogger("hub.serve").warning("no key ring for this worker: %s", err)
        return None


def _api(url: str, listen: str, config):
    """The HTTP API on its own database connection, run in a thread beside the worker."""
    from hub.api.app import create_app
    from hub.api.server import Background, parse_listen
    from hub.cli.common import open_db

    parse_listen(listen)

    class Api:
        def start(self) -> None:
            self.db = open_db(url)
            self.server = Background(create_app(self.db, config), listen, config)
            self.server.start()
            logging.getLogger("hub.api").info("api listening", extra={"listen": listen})

        def stop(self) -> None:
            self.server.stop()
            self.db.close()

    return Api()


def _checkpoints(db, config, ring):
    """The audit checkpointer when the config asks for checkpoints and a key ring exists."""
    import logging as _logging

    from hub.app import Checkpointer
    from hub.keys import default_dir

    audit = config.audit
    if audit.checkpoint_interval <= 0:
        return None
    if ring is None:
        directory = config.keys.directory or default_dir()
        if audit.checkpoint_file or audit.checkpoint_topic:
            raise UsageError(f"[audit] asks for checkpoints, but there is no key ring in "
                             f"{directory} to sign them (keys.directory)")
        _logging.getLogger("hub.audit").warning(
            "audit checkpoints off: no key ring in %s (keys.directory)", directory)
        return None
    return Checkpointer(db, ring, audit.checkpoint_interval, audit.checkpoint_file,
                        topic=audit.checkpoint_topic)