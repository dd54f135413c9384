"""`edge-hub serve`: run one hub worker."""

from __future__ import annotations

import argparse

from hub.cli.common import UsageError, parse_broker, store_of


def register(sub, add_db) -> None:
    p = sub.add_parser("serve", help="run a hub worker: ingest, fleet state, alert feed")
    p.add_argument("--broker", default="127.0.0.1:1883", help="MQTT broker HOST:PORT")
    add_db(p, json_flag=False)
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
    p.add_argument("--max-skew", type=float, default=3600.0,
                   help="seconds a store's timestamp may lie ahead of the hub's clock "
                        "(a later one is rejected as implausible_ts)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from edge_common import logs
    from edge_protocol.timestamps import DEFAULT_SKEW, Skew
    from hub.app import default_client_id, serve
    from hub.domains.alerts import FlapPolicy
    from hub.ingest import Settings

    host, port = parse_broker(args.broker)
    if args.batch_max < 1 or args.batch_ms < 1:
        raise UsageError("--batch-max and --batch-ms must be >= 1")
    if not 0 < args.max_skew <= 366 * 86400:
        raise UsageError("--max-skew: expected seconds between 0 and a year")
    logs.setup(args.log_format, args.log_level)
    settings = Settings(
        host=host, port=port, client_id=args.client_id or default_client_id(),
        group=args.group, prefix=args.prefix, shared=not args.embedded_broker,
        mqtt5=not args.embedded_broker, keepalive=args.keepalive,
        batch_max=args.batch_max, batch_s=args.batch_ms / 1000.0,
        flaps=FlapPolicy(max_flaps=args.flap_max, window_s=args.flap_window,
                         stable_s=args.flap_stable),
        skew=Skew(future_s=args.max_skew, past_s=DEFAULT_SKEW.past_s))
    return serve(store_of(args, create=True), settings, embedded=args.embedded_broker)
