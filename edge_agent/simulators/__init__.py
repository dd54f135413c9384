"""Simulated store devices for tests, demos and `edge-agent simulate`."""
