"""The `edge-hub` console script: the CLI, or one line naming the extra when a library the hub
needs is not installed (`pip install retail-edge` without `[hub]`)."""

from __future__ import annotations

import sys

# Top-level modules of the hub extra's libraries (pyproject.toml, [hub]).
HUB_MODULES = frozenset({"paho", "psycopg", "amqtt", "orjson", "cryptography", "starlette",
                         "uvicorn"})


def main() -> int:
    try:
        from hub.cli import main as cli

        return cli()
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in HUB_MODULES:
            raise
        print(f"edge-hub: the library {err.name!r} is not installed; install the hub with: "
              "pip install 'retail-edge[hub]'", file=sys.stderr)
        return 1
