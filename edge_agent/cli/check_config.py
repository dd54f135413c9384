"""`edge-agent check-config FILE`: validate a config file without starting anything."""

from __future__ import annotations

from collections import Counter

from edge_agent.config import load_config
from edge_agent.errors import ConfigError, Problem
from edge_agent.state.dirs import problem as state_dir_problem


def register(sub) -> None:
    p = sub.add_parser("check-config", help="validate a config file",
                       description="Validate a config file: exit 0 with a summary, or 2 with "
                                   "one line per problem.")
    p.add_argument("file", help="TOML config file")
    p.set_defaults(func=run)


def run(args) -> int:
    config = load_config(args.file)
    # The folder itself, as this user sees it now (not created here: check-config changes nothing).
    why = state_dir_problem(config.agent.state_dir, create=False)
    if why:
        raise ConfigError(Problem("agent.state_dir", why), args.file)
    kinds = Counter(d.kind for d in config.devices)
    by_kind = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    print(f"{args.file}: ok")
    print(f"  store {config.agent.store} in region {config.agent.region}")
    print(f"  {len(config.devices)} device(s): {by_kind}")
    print(f"  state in {config.agent.state_dir}")
    sync = config.sync
    print(f"  sync to {sync.host}:{sync.port}"
          f" ({'TLS with client certificate' if sync.tls else 'plain MQTT, no TLS'})"
          if sync.enabled else "  sync disabled")
    from edge_protocol import signing

    kids = sorted(signing.trusted_keys(config.trust.hub_keys))
    if not config.control.enabled:
        print("  commands and flags from the hub disabled ([control].enabled = false)")
    elif kids:
        print(f"  trusts {len(kids)} hub key(s): {', '.join(kids)}"
              + (f"; no test print during {config.control.trading_hours} unless forced"
                 if config.control.trading_hours else ""))
    else:
        print("  no hub key pinned in [trust]: commands and flags will be refused")
    return 0
