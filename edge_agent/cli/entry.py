"""The `edge-agent` console script: the CLI, or one line naming the extra when a library the
agent needs is not installed (`pip install retail-edge` without `[agent]`)."""

from __future__ import annotations

import sys

# Top-level modules of the agent extra's libraries (pyproject.toml, [agent]).
AGENT_MODULES = frozenset({"psutil", "pysnmp", "serial", "escpos", "paho", "onnxruntime",
                           "cryptography"})


def main() -> int:
    try:
        from edge_agent.cli.main import main as cli

        return cli()
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in AGENT_MODULES:
            raise
        print(f"edge-agent: the library {err.name!r} is not installed; install the agent with: "
              "pip install 'retail-edge[agent]'", file=sys.stderr)
        return 1
