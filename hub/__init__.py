"""Retail Edge hub: fleet state, alert routing and the central IT CLI, over MQTT."""

__version__ = "0.1.0"
