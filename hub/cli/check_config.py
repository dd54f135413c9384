"""`edge-hub check-config FILE`: validate a hub config without starting anything."""

from __future__ import annotations

import re
import sys

from edge_common.output import escape


def register(sub, add_db=None) -> None:
    p = sub.add_parser("check-config", help="validate a hub config file",
                       description="Validate a hub config file: exit 0 with a summary, or 2 "
                                   "with one line per problem, named by key path.")
    p.add_argument("file", help="TOML config file (see hub.example.toml)")
    p.set_defaults(func=run)


def run(args) -> int:
    from hub.config import load_config
    from hub.errors import ConfigError

    try:
        config = load_config(args.file)
        from hub.ticketing import policy_from_config

        policy = policy_from_config(config)   # [tickets]: the policy's own key paths
    except ConfigError as err:
        where = f"{err.source}: " if err.source else ""
        for problem in err.problems:
            print(escape(f"{where}{problem}"), file=sys.stderr)
        return 2
    b, a = config.broker, config.api
    print(f"{escape(args.file)}: ok")
    print(f"  broker {escape(b.host)}:{b.port}" + (" (TLS)" if b.tls else "")
          + (" embedded" if b.embedded else ""))
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", config.database.url)  # no password
    print(f"  database {escape(url or '(default)')}")
    print(f"  api {escape(a.listen)}" + (" (HTTPS)" if a.tls_cert else " (plain HTTP)")
          if a.listen else "  api off")
    au = config.audit
    print(f"  audit checkpoints every {au.checkpoint_interval:g} s"
          + (f" to {escape(au.checkpoint_file)}" if au.checkpoint_file else "")
          if au.checkpoint_interval else "  audit checkpoints off")
    print(f"  tickets {'on' if policy.enabled else 'off'}"
          + (f": {len(policy.families)} famil{'y' if len(policy.families) == 1 else 'ies'}, "
             f"{len(policy.connectors)} connector(s)" if policy.enabled else ""))
    return 0
