"""Retail Edge store agent: polls in-store devices, predicts failures, syncs with the hub."""

__version__ = "0.1.0"
