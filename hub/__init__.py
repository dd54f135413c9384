"""Retail Edge hub: fleet state, alert routing and the central IT CLI, over MQTT.

Layers (lower never imports higher; docs/architecture.md, checked by .importlinter):
errors/config < store, bus < domains < ingest < app < api, cli.
"""

__version__ = "0.1.0"
