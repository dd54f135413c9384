"""The `edge-agent` command line: one module per command, found by `main`."""
