"""Run one fuzz target under atheris: `python -m fuzz.run TARGET [libFuzzer flags] [CORPUS...]`.

Instruments the edge_agent and edge_protocol modules the targets import (and hub's, for the
hub_* targets), so coverage guides the mutations, and
hands every input to fuzz.targets.TARGETS[TARGET]. Any exception escaping the target is a
crash: libFuzzer writes the input to crash-<hash> (in -artifact_prefix) and exits non-zero.
"""

from __future__ import annotations

import sys


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        print("usage: python -m fuzz.run TARGET [libFuzzer flags] [CORPUS_DIR...]",
              file=sys.stderr)
        return 2
    name = sys.argv.pop(1)
    try:
        import atheris
    except ImportError:
        print("fuzz: atheris is not installed (pip install -e '.[fuzz]')", file=sys.stderr)
        return 2
    on_hub = name.startswith("hub_")
    with atheris.instrument_imports(include=["edge_agent", "edge_protocol", "hub"] if on_hub
                                    else ["edge_agent", "edge_protocol"]):
        from fuzz.targets import MAX_LEN, TARGETS

        target = TARGETS.get(name)
        if target is None:
            print(f"fuzz: unknown target {name!r}; known: {', '.join(TARGETS)}",
                  file=sys.stderr)
            return 2
        # Import what the target imports lazily, inside the instrumentation.
        try:
            target(b"")
        except Exception:
            pass
        import edge_agent.cli.replay, edge_agent.collectors.escpos.protocol  # noqa: F401,E401
        import edge_agent.collectors.scanner.protocol, edge_agent.collectors.snmp.ber  # noqa
        import edge_agent.config, edge_agent.configschema, edge_agent.reading  # noqa
        import edge_protocol, edge_protocol.bodies, edge_protocol.envelope  # noqa: F401,E401
        if on_hub:  # the hub's modules the targets reach (imported by the first call above)
            import hub.ingest.writer, hub.domains.fleet, hub.domains.quarantine  # noqa
            import hub.domains.alerts, hub.domains.tickets, hub.ticketing  # noqa: F401,E401

    def one(data: bytes) -> None:
        target(data[:MAX_LEN])

    if not any(a.startswith("-max_len") for a in sys.argv):
        sys.argv.append(f"-max_len={MAX_LEN}")
    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
