"""Commands: signed commands to stores and their results (helper C)."""
