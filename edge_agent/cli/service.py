"""`edge-agent service install|uninstall|status`: run the agent as a systemd or Windows service."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edge_agent.cli.output import print_json


def register(sub) -> None:
    p = sub.add_parser("service", help="install, upgrade, remove or inspect the agent's service",
                       description="Install the agent as a systemd service (Linux) or a Windows "
                                   "service. Installing again upgrades: the unit is rewritten "
                                   "and the agent restarted; config and state are kept.")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    inst = verbs.add_parser("install", help="install (or upgrade) and start the service")
    inst.add_argument("--dry-run", action="store_true",
                      help="print every step and change nothing")
    inst.add_argument("--no-start", action="store_true", help="enable it but do not (re)start")
    inst.add_argument("--config-source", metavar="FILE",
                      help="install this config when none is there (default: the bundled example)")
    inst.add_argument("--root", metavar="DIR",
                      help="Linux: install into an image tree (files and the enable link only)")
    uninst = verbs.add_parser("uninstall", help="stop and remove the service; keep config and state")
    uninst.add_argument("--dry-run", action="store_true", help="print every step, change nothing")
    uninst.add_argument("--root", metavar="DIR", help="Linux: remove from an image tree")
    st = verbs.add_parser("status", help="what the service manager says about the agent")
    st.add_argument("--json", action="store_true")
    for verb in (inst, uninst, st):
        # Hidden: plan for the other platform (tests, and reviewing a Windows install on Linux).
        verb.add_argument("--target", choices=("linux", "windows"),
                          default="windows" if os.name == "nt" else "linux", help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args) -> int:
    from edge_agent.errors import ConfigError

    if args.verb == "status":
        return _status(args)
    windows = args.target == "windows"
    if getattr(args, "config_source", None):
        from edge_agent.config import load_config

        load_config(args.config_source)  # A bad config is refused before anything changes.
    if windows:
        from edge_agent.service import windows as impl

        if getattr(args, "root", None):
            raise ConfigError("--root is for Linux image trees only")
        plan = (impl.install_plan(start=not args.no_start, config_source=args.config_source)
                if args.verb == "install" else impl.uninstall_plan())
    else:
        from edge_agent.service import linux as impl

        root = Path(args.root) if args.root else None
        plan = (impl.install_plan(root, start=not args.no_start,
                                  config_source=Path(args.config_source)
                                  if args.config_source else None)
                if args.verb == "install" else impl.uninstall_plan(root))
    code = plan.execute(args.dry_run)
    if not args.dry_run:
        print(f"service {args.verb} done")
    return code


def _status(args) -> int:
    from edge_agent.service.paths import default_config_path

    if args.target == "windows":
        from edge_agent.service import windows as impl

        doc = impl.status()
    else:
        from edge_agent.service import linux as impl

        doc = impl.status()
    config = default_config_path()
    doc["config"] = config
    doc["config_present"] = "yes" if Path(config).exists() else "no"
    if args.json:
        print_json(doc)
        return 0
    for key, value in doc.items():
        print(f"{key}: {value if value != '' else '-'}")
    return 0 if doc.get("ActiveState", doc.get("state")) in ("active", "running") else 3
