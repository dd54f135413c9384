"""Simulated store hardware for tests, demos and trying the agent without devices."""
