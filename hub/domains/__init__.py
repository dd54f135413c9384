"""The hub's domains: one folder each, owning its tables (schema.py) and its rules."""
