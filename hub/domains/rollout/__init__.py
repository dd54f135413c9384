"""Rollout: configs, models and flags sent to stores in waves (helper C)."""
