"""The `edge-hub` command line for central IT."""

from __future__ import annotations

import argparse

from hub import __version__


def main(argv: list[str] | None = None) -> int:
    """Run the hub CLI; return the exit code."""
    parser = argparse.ArgumentParser(prog="edge-hub", description="Retail Edge hub")
    parser.add_argument("--version", action="store_true", help="print versions and exit")
    args = parser.parse_args(argv)
    if args.version:
        from edge_agent.versions import HUB_LIBRARIES, version_text

        print(version_text("edge-hub", __version__, HUB_LIBRARIES))
        return 0
    parser.print_help()
    return 2
