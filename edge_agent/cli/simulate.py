"""`edge-agent simulate DEVICE`: serve a simulated device (one subcommand per simulator module)."""

from __future__ import annotations


def register(sub) -> None:
    from edge_agent import simulators

    p = sub.add_parser("simulate", help="serve a simulated device (printer, ...)",
                       description="Serve a simulated store device until Ctrl-C, to try the "
                                   "agent or a probe without hardware.")
    devices = p.add_subparsers(dest="device", metavar="DEVICE")
    for module in simulators.modules():
        if hasattr(module, "register"):
            module.register(devices)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
