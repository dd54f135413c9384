"""Render the broker templates: the ACL with one block per store and manager, and the config.

    python3 render.py acl --hub hub-1 --store eu-west/store-0001 --manager eu-west/rm-alice > acl
    python3 render.py conf port=8883 ca_file=... cert_file=... key_file=... \
        acl_file=/etc/mosquitto/retail-edge.acl persistence_dir=/var/lib/mosquitto > retail-edge.conf

Standard library only, so it runs on the broker host. The hub generates the same ACL from its
store registry; this is for a first broker, a lab, and the tests.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def _fill(text: str, values: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        if m.group(1) not in values:
            raise SystemExit(f"render: no value for {{{{{m.group(1)}}}}}")
        return values[m.group(1)]
    # Comments may name placeholders to explain them; only settings are filled.
    return "".join(line if line.lstrip().startswith("#") else _PLACEHOLDER.sub(one, line)
                   for line in text.splitlines(keepends=True))


def _pair(text: str, what: str) -> tuple[str, str]:
    region, _, name = text.partition("/")
    for part in (region, name):
        # MQTT wildcards or spaces in a name would widen or break the ACL.
        if not _ID.match(part):
            raise SystemExit(f"render: bad {what} {text!r}: want REGION/NAME, each 1-64 of "
                             f"letters, digits, '_', '.', ':' or '-'")
    return region, name


def render_acl(hub: str, stores: list[tuple[str, str]], managers: list[tuple[str, str]],
               template: str | None = None) -> str:
    """Return the ACL file: the hub block, then one block per (region, store) and manager."""
    text = template if template is not None else (HERE / "acl.template").read_text()
    blocks = {}
    for name in ("store", "manager"):
        m = re.search(rf"# BEGIN {name}\n(.*?)# END {name}\n", text, re.S)
        blocks[name] = m.group(1)
        text = text.replace(m.group(0), f"@@{name}@@")
    out = _fill(text.replace("@@store@@", "").replace("@@manager@@", ""), {"hub_user": hub})
    for region, store in stores:
        out += "\n" + _fill(blocks["store"], {"store": store, "region": region})
    for region, manager in managers:
        out += "\n" + _fill(blocks["manager"], {"manager": manager, "region": region})
    return out


def render_conf(values: dict[str, str], template: str | None = None) -> str:
    """Return mosquitto.conf with every placeholder filled."""
    text = template if template is not None else (HERE / "mosquitto.conf.template").read_text()
    return _fill(text, values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    acl = sub.add_parser("acl")
    acl.add_argument("--hub", required=True)
    acl.add_argument("--store", action="append", default=[], help="REGION/STORE")
    acl.add_argument("--manager", action="append", default=[], help="REGION/ACCOUNT")
    conf = sub.add_parser("conf")
    conf.add_argument("values", nargs="*", help="KEY=VALUE")
    args = parser.parse_args(argv)
    if args.what == "acl":
        print(render_acl(args.hub, [_pair(s, "store") for s in args.store],
                         [_pair(m, "manager") for m in args.manager]), end="")
    else:
        values = dict(v.partition("=")[::2] for v in args.values)
        print(render_conf(values), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
