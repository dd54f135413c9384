"""`edge-agent probe URL`: poll one device once and print its reading."""

from __future__ import annotations

import asyncio
import dataclasses

from edge_agent import collectors
from edge_agent.config import device_from_url
from edge_agent.cli.output import print_json, table
from edge_agent.scheduler import DeviceRunner


def register(sub) -> None:
    schemes = ", ".join(sorted(s for k in collectors.names()
                               for s in getattr(collectors.get(k), "SCHEMES", ())))
    p = sub.add_parser("probe", help="poll one device once",
                       description=f"Poll one device named by a URL once. Schemes: {schemes}.")
    p.add_argument("url", help="device URL, such as host:// or snmp://public@10.0.0.5:161")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (default 5)")
    p.add_argument("--json", action="store_true", help="print the serialized reading")
    p.set_defaults(func=run)


def run(args) -> int:
    if not args.timeout > 0:
        from edge_agent.errors import ConfigError

        raise ConfigError("--timeout: must be > 0")
    device = device_from_url(args.url)
    device = dataclasses.replace(device, timeout=args.timeout)
    reading = asyncio.run(_probe(device))
    if args.json:
        print_json(reading.to_dict())
    else:
        state = f"STALE: {reading.reason}" if reading.stale else "fresh"
        print(f"{reading.device} ({reading.kind}) at {reading.to_dict()['ts']}: {state}")
        print(table(("name", "value"), sorted(reading.values.items())))
    return 1 if reading.stale else 0


async def _probe(device):
    from edge_agent import blocking

    runner = DeviceRunner(device, sink=lambda r, s: None)
    blocking.owner(device.id)
    try:
        # The loop's own open and poll: a collector that cannot start or answer is reported
        # as a stale reading with its reason, exactly as the agent would record it.
        await runner.open()
        return await runner.poll_once()
    finally:
        await runner._close()
        blocking.shutdown()
